"""Summaries of a shard URI: sizes, objects per clip, and motion-mask quality against GT."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from diod_ray.data.shards import iter_clips, list_splits, read_manifest

if TYPE_CHECKING:
    from diod_ray.config import Config


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "min": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 3), "min": float(a.min()), "max": float(a.max())}


def _clean(d: dict) -> dict:
    """NaN -> None so the summary is valid JSON."""
    return {
        k: (
            None
            if isinstance(v, float) and math.isnan(v)
            else (round(v, 4) if isinstance(v, float) else v)
        )
        for k, v in d.items()
    }


def inspect_split(
    uri: str,
    split: str,
    cfg: Config | None = None,
    limit: int | None = None,
    checkpoint: str | None = None,
    weights: str | None = None,
) -> dict:
    """Clips, T/H/W, GT objects per clip and their share of the frame, motion segments per frame
    and, where GT and moving flags exist, :class:`~diod_ray.data.mask_quality.MaskQuality` of the
    motion masks and, with ``checkpoint``, the W_fg coverage of static vs moving objects
    (:mod:`.fg_coverage`)."""
    from diod_ray.data.mask_quality import MaskQuality

    settings = cfg.storage if cfg else None
    manifest = read_manifest(uri, split, settings)
    quality = MaskQuality(min_gt_pixels=cfg.data.min_mask_pixels if cfg else 1)
    objects, segments, moving_objects, areas = [], [], [], []
    seen = with_moving = 0
    for clip in iter_clips(uri, split, settings, limit=limit):
        seen += 1
        segments.extend(len(np.unique(m[m > 0])) for m in clip.motion)
        if clip.gt is not None:
            ids = np.unique(clip.gt)
            objects.append(int((ids > 0).sum()))
            for frame in clip.gt:  # each visible object's share of its frame
                counts = np.bincount(frame.ravel().astype(np.int64))[1:]
                areas.extend((counts[counts > 0] / frame.size).tolist())
            if clip.gt_moving is not None:
                with_moving += 1
                moving_objects.append(int(clip.gt_moving[:, 1:].any(axis=0).sum()))
                quality.update(clip.gt, clip.gt_moving, clip.motion)
    out = {
        "clips": int(manifest["clips"]),
        "clips_inspected": seen,
        "T": manifest["num_frames"],
        "H": manifest["height"],
        "W": manifest["width"],
        "has_gt": bool(manifest.get("has_gt")),
        "sources": manifest.get("sources", []),
        "files": len(manifest["files"]),
        "motion_segments_per_frame": _stats(segments),
    }
    if objects:
        out["objects_per_clip"] = _stats(objects)
        # per (frame, visible GT object): the scale a pseudo-label should have (docs/teacher.md)
        out["object_area_share"] = _stats(areas)
    if moving_objects:
        out["moving_objects_per_clip"] = _stats(moving_objects)
    if with_moving:
        out["mask_quality"] = _clean(quality.summary())
        if checkpoint:
            from diod_ray.data.fg_coverage import fg_coverage

            clips = iter_clips(uri, split, settings, limit=limit)
            out["fg_coverage"] = fg_coverage(checkpoint, clips, weights=weights)
    return out


def inspect_uri(
    uri: str,
    split: str | None = None,
    cfg: Config | None = None,
    limit: int | None = None,
    checkpoint: str | None = None,
    weights: str | None = None,
) -> dict:
    splits = [split] if split else list_splits(uri, cfg.storage if cfg else None)
    return {
        "uri": uri,
        "splits": {s: inspect_split(uri, s, cfg, limit, checkpoint, weights) for s in splits},
    }
