"""Synthetic benchmark version 3: object kinds, sizes, static and moving objects per clip, motion
masks that never hold static objects, determinism and the background-texture knob."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from diod_ray.config import SyntheticConfig, load_preset
from diod_ray.data.synthetic.render import generate_video
from diod_ray.data.synthetic.v3_kinds import KINDS

H, W = 64, 128
GRID_CELL_PX = 16  # one cell of the stride-4 attention grid


def _v3(**kw) -> SyntheticConfig:
    kw = {"moving_share": 0.5, "camera_motion_share": 0.6, **kw}
    return SyntheticConfig(version=3, **kw)


@pytest.fixture(scope="module")
def sample():
    return [generate_video(_v3(), H, W, "train", i) for i in range(24)]


def test_kinds_shapes_and_objects_per_clip(sample):
    """At least 3 kinds, each its own shape family (cars wide, people tall, signs square); 3-6
    objects per clip with at least one static and one moving."""
    aspect = {k: [] for k in KINDS}
    for v in sample:
        G = v.moving.shape[1] - 1
        assert 3 <= G <= 6 and len(v.kinds) == G
        moves = v.moving[:, 1:].any(0)
        assert moves.any() and not moves.all()
        for k in range(1, G + 1):
            ys, xs = np.nonzero(v.gt[0] == k)
            if len(ys) > 40 and not v.camera_motion:
                aspect[v.kinds[k - 1]].append((np.ptp(xs) + 1) / (np.ptp(ys) + 1))
    assert all(len(a) >= 3 for a in aspect.values()), {k: len(a) for k, a in aspect.items()}
    assert min(aspect["car"]) > 1.2 and max(aspect["person"]) < 0.8
    assert 0.75 < np.median(aspect["sign"]) < 1.3


def test_objects_are_large_for_the_stride4_grid(sample):
    """Median object area >= 20 grid cells, none at or below the preset's min_region_pixels."""
    threshold = load_preset("synthetic").distill.min_region_pixels
    cells = []
    for v in sample:
        for g in v.gt:
            area = np.bincount(g.ravel(), minlength=v.moving.shape[1])[1:]
            cells.extend(area[area > 0] / GRID_CELL_PX)
    cells = np.array(cells)
    assert len(cells) > 300
    assert np.median(cells) >= 20 and cells.min() > threshold


def test_static_objects_stay_put_and_moving_ones_move():
    """Without camera motion a static object never takes over background pixels, a moving one
    (above the slow speeds) does."""
    static_leaks, moving_hits, moving_total = 0, 0, 0
    for i in range(16):
        v = generate_video(_v3(camera_motion_share=0.0), H, W, "val", i)
        for t in range(v.gt.shape[0] - 1):
            newly = np.bincount(v.gt[t + 1][v.gt[t] == 0], minlength=v.moving.shape[1])
            for k in range(1, v.moving.shape[1]):
                if not v.moving[t, k]:
                    static_leaks += newly[k]
                else:
                    moving_total += 1
                    moving_hits += newly[k] > 0
    assert static_leaks == 0
    assert moving_total > 40 and moving_hits / moving_total > 0.75


def test_motion_masks_hold_movers_and_never_static_objects():
    """Real flow masks on a few clips: static objects are not covered beyond noise, movers are
    found, and there is background noise (spurious segments)."""
    from diod_ray.data.inspection.mask_quality import MaskQuality
    from diod_ray.data.motion import motion_masks

    d = load_preset("synthetic").data
    q = MaskQuality(d.min_mask_pixels)
    static_px = static_covered = 0
    for i in range(12):
        v = generate_video(_v3(), H, W, "test", i)
        m = motion_masks(v.frames, d.flow, d.min_mask_pixels)
        q.update(v.gt, v.moving, m)
        static = (v.gt > 0) & ~np.take_along_axis(v.moving, v.gt.reshape(len(v.gt), -1), 1).reshape(
            v.gt.shape
        )
        static_px += int(static.sum())
        static_covered += int((static & (m > 0)).sum())
    s = q.summary()
    assert s["static_recall"] == 0.0
    assert static_covered / static_px < 0.05
    assert s["moving_recall"] > 0.4 and s["spurious_per_frame"] > 0.1


def test_deterministic_and_streams_disjoint():
    a = generate_video(_v3(), H, W, "val", 5)
    b = generate_video(_v3(), H, W, "val", 5)
    assert a.frames.tobytes() == b.frames.tobytes() and a.gt.tobytes() == b.gt.tobytes()
    assert np.array_equal(a.moving, b.moving) and a.kinds == b.kinds
    assert a.video_id == "synthetic-v3-val-000005"
    assert not np.array_equal(a.frames, generate_video(_v3(), H, W, "test", 5).frames)
    assert not np.array_equal(a.frames, generate_video(_v3(seed=1), H, W, "val", 5).frames)


def test_knob_changes_the_background_only():
    """bg_object_texture_share repaints background cells; objects and GT stay the same."""
    changed = []
    for i in range(6):
        a = generate_video(_v3(), H, W, "train", i)
        b = generate_video(_v3(bg_object_texture_share=0.25), H, W, "train", i)
        assert np.array_equal(a.gt, b.gt) and np.array_equal(a.moving, b.moving)
        diff = np.abs(a.frames.astype(int) - b.frames.astype(int)).max(-1) > 12  # [T,H,W]
        obj = a.gt > 0
        # inside the objects (their edges blend with the background under a camera warp)
        inner = np.stack([cv2.erode(o.astype(np.uint8), np.ones((3, 3), np.uint8)) for o in obj])
        assert diff[inner > 0].mean() < 0.002
        changed.append(diff[~obj].mean())
    assert 0.18 < np.mean(changed) < 0.33  # about the asked share of the visible background
    with pytest.raises(ValueError, match="bg_object_texture_share"):
        generate_video(_v3(bg_object_texture_share=1.5), H, W, "train", 0)


def test_premise_holds_and_the_knob_weakens_it():
    """The fixed pixel classifiers on a small sample: appearance separates objects from the
    background, colour does not; object textures on the background lower the appearance AUC."""
    pytest.importorskip("sklearn")
    from diod_ray.data.inspection import premise

    def clips(cfg, split, n):
        for i in range(n):
            v = generate_video(cfg, H, W, split, i)
            yield v.frames, v.gt, v.moving

    out = {}
    for share in (0.0, 0.25):
        cfg = _v3(bg_object_texture_share=share)
        out[share] = premise.premise_report(clips(cfg, "train", 12), clips(cfg, "val", 6))
    assert out[0.0]["appearance_auc"] > 0.9 and out[0.0]["appearance_auc_static"] > 0.9
    assert out[0.0]["colour_auc"] < 0.7 and out[0.0]["premise_holds"]
    assert out[0.25]["appearance_auc"] < out[0.0]["appearance_auc"] - 0.05


def test_preset_config_selects_version_3():
    cfg = load_preset("synthetic")
    s = dataclasses.replace(cfg.data.synthetic, version=3)
    v = generate_video(s, cfg.data.height, cfg.data.width, "val", 0)
    assert v.video_id.startswith("synthetic-v3-") and v.kinds is not None


def test_a_v3_folder_is_refused_under_another_version(tmp_path):
    """The manifest records version 3; a version-2 config on that folder fails in one line."""
    from diod_ray.config import load_config
    from diod_ray.data.errors import DataError
    from diod_ray.data.synthetic.generate import ensure_synthetic, generate_split

    uri = str(tmp_path / "v3")
    cfg = load_config("synthetic", sets=[f"data.uri={uri}"])
    for split in ("train", "test"):
        generate_split(cfg, split, clips=2, progress=False, workers=1)
    ensure_synthetic(cfg, progress=False)  # same version: nothing to do
    v2 = load_config("synthetic-v2", sets=[f"data.uri={uri}"])
    with pytest.raises(
        DataError, match="synthetic benchmark version 3, but data.synthetic.version is 2"
    ):
        ensure_synthetic(v2, progress=False)
