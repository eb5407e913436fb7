"""Summaries of a shard URI: sizes, objects per clip and their size on the attention grid,
motion-mask quality against GT, and whether DIOD's premise holds (:mod:`.premise`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from diod_ray.data.shards.store import iter_clips, list_splits, read_manifest

if TYPE_CHECKING:
    from diod_ray.config import Config
    from diod_ray.data.shards.rows import Clip

# clips -> the W_fg coverage summary of a model (diod_ray.inference.fg_coverage with its
# checkpoint bound): the caller brings the model, so data/ imports no model or checkpoint
Coverage = Callable[[Iterable["Clip"]], dict]

# the model's attention grid is at stride 4 (ResNet trunk; DINOv2 features are upsampled to it)
GRID_STRIDE = 4


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


def _cells(cells: list[float], min_region: int | None) -> dict:
    """Object sizes in attention-grid cells: median, 10th percentile, min and the share at or
    below ``distill.min_region_pixels`` (regions the teacher drops)."""
    a = np.asarray(cells, dtype=float)
    out = {
        "median": round(float(np.median(a)), 2),
        "p10": round(float(np.percentile(a, 10)), 2),
        "min": round(float(a.min()), 2),
    }
    if min_region is not None:
        out["min_region_pixels"] = min_region
        out["share_at_or_below_min_region"] = round(float((a <= min_region).mean()), 4)
    return out


def inspect_split(
    uri: str,
    split: str,
    cfg: Config | None = None,
    limit: int | None = None,
    coverage: Coverage | None = None,
) -> dict:
    """Clips, T/H/W, GT objects per clip, their share of the frame and their area in cells of the
    stride-4 attention grid, motion segments per frame and, where GT and moving flags exist,
    :class:`~diod_ray.data.inspection.mask_quality.MaskQuality` of the motion masks and, with
    ``coverage``, a model's W_fg coverage of static vs moving objects (:mod:`.fg_coverage`)."""
    from diod_ray.data.inspection.mask_quality import MaskQuality

    settings = cfg.storage if cfg else None
    manifest = read_manifest(uri, split, settings)
    quality = MaskQuality(min_gt_pixels=cfg.data.min_mask_pixels if cfg else 1)
    objects, segments, moving_objects, areas, cells = [], [], [], [], []
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
                cells.extend((counts[counts > 0] / GRID_STRIDE**2).tolist())
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
    if cells:  # per (frame, visible GT object), in cells of the stride-4 grid
        out["object_cells"] = _cells(cells, cfg.distill.min_region_pixels if cfg else None)
    if moving_objects:
        out["moving_objects_per_clip"] = _stats(moving_objects)
    if with_moving:
        out["mask_quality"] = _clean(quality.summary())
        if coverage is not None:
            out["fg_coverage"] = coverage(iter_clips(uri, split, settings, limit=limit))
    return out


def inspect_uri(
    uri: str,
    split: str | None = None,
    cfg: Config | None = None,
    limit: int | None = None,
    coverage: Coverage | None = None,
    premise: bool = True,
) -> dict:
    """Each split's summary (``split``: only that one; ``coverage``: see :func:`inspect_split`)
    and, with ``premise``, the URI's premise section (:func:`premise_section`)."""
    all_splits = list_splits(uri, cfg.storage if cfg else None)
    splits = [split] if split else all_splits
    out = {
        "uri": uri,
        "splits": {s: inspect_split(uri, s, cfg, limit, coverage) for s in splits},
    }
    if premise:
        out["premise"] = premise_section(uri, all_splits, cfg)
    return out


def premise_section(uri: str, splits: list[str], cfg: Config | None = None) -> dict:
    """The fixed pixel classifiers of :mod:`.premise`, trained on the first clips of the train
    split and scored on the val split (the test split when there is none). ``{"skipped": why}``
    when a split or GT is missing, and ``{"skipped": ..., "extra": "premise"}`` without
    scikit-learn."""
    from diod_ray.data.inspection import premise

    settings = cfg.storage if cfg else None
    train = cfg.data.train_split if cfg else "train"
    candidates = (cfg.data.val_split, cfg.data.test_split) if cfg else ("val", "test")
    scored = [s for s in candidates if s in splits and s != train]
    if train not in splits or not scored:
        return {"skipped": f"needs a {train!r} split and a val or test split with GT"}

    def arrays(split: str, n: int):
        for clip in iter_clips(uri, split, settings, limit=n):
            if clip.gt is None:
                raise _NoGT(split)
            yield clip.frames, clip.gt, clip.gt_moving

    try:
        report = premise.premise_report(
            arrays(train, premise.TRAIN_CLIPS), arrays(scored[0], premise.EVAL_CLIPS)
        )
    except premise.PremiseUnavailable as exc:
        return {"skipped": str(exc), "extra": "premise"}
    except _NoGT as exc:
        return {"skipped": f"split {exc.args[0]!r} has no GT (the classifiers learn from it)"}
    return {"train_split": train, "scored_split": scored[0], **report}


def benchmark_premise(cfg: Config) -> dict:
    """The premise of the data a run or sweep trains on (``cfg.data.uri``), measured before any
    training: :func:`premise_section` over the URI's splits. Its ``premise_holds`` (True, False,
    or absent with a ``skipped`` reason) joins the verdict of the burn-in gates
    (:func:`diod_ray.preconditions.verdict`)."""
    return premise_section(cfg.data.uri, list_splits(cfg.data.uri, cfg.storage), cfg)


class _NoGT(Exception):
    """A split the premise needs has no GT."""
