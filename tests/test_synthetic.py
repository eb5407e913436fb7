"""The procedural benchmark: determinism, ground truth consistency, motion flags, camera share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diod_ray.config import SyntheticConfig, load_preset
from diod_ray.data.synthetic import generate_video

H, W = 64, 128


def _clips(cfg, n, split="train", h=H, w=W):
    return [generate_video(cfg, h, w, split, i) for i in range(n)]


@pytest.fixture(scope="module")
def batch():
    return _clips(SyntheticConfig(), 48)


def test_deterministic_and_splits_differ():
    cfg = SyntheticConfig()
    a, b = generate_video(cfg, H, W, "train", 3), generate_video(cfg, H, W, "train", 3)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.gt, b.gt)
    assert np.array_equal(a.moving, b.moving) and a.video_id == b.video_id
    c = generate_video(cfg, H, W, "test", 3)
    d = generate_video(dataclasses.replace(cfg, seed=1), H, W, "train", 3)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.frames, d.frames)
    assert a.video_id != c.video_id


@pytest.mark.parametrize("style", ["tabletop", "driving"])
def test_shapes_dtypes_and_ids(style):
    cfg = SyntheticConfig(style=style, frames_per_video=4, min_objects=2, max_objects=5)
    for v in _clips(cfg, 6, h=48, w=80):
        assert v.frames.shape == (4, 48, 80, 3) and v.frames.dtype == np.uint8
        assert v.gt.shape == (4, 48, 80) and v.gt.dtype == np.int32
        G = v.moving.shape[1] - 1
        assert 2 <= G <= 5 and v.moving.shape == (4, G + 1) and v.moving.dtype == bool
        assert not v.moving[:, 0].any()
        assert v.gt.min() >= 0 and v.gt.max() <= G
        assert (v.gt == 0).mean() > 0.3  # background is visible
        assert isinstance(v.camera_motion, bool)


def test_object_colour_track_is_consistent_over_time(batch):
    """An id keeps its appearance: its mean colour moves little between frames, much less than
    the distance to other objects' colours."""
    own, other = [], []
    for v in batch:
        T, G = v.gt.shape[0], v.moving.shape[1] - 1
        for t in range(T - 1):
            means = {}
            for tt in (t, t + 1):
                for k in range(1, G + 1):
                    m = v.gt[tt] == k
                    if m.sum() >= 40:
                        means[tt, k] = v.frames[tt][m].mean(0)
            for k in range(1, G + 1):
                if (t, k) in means and (t + 1, k) in means:
                    own.append(np.abs(means[t, k] - means[t + 1, k]).max())
                    for j in range(1, G + 1):
                        if j != k and (t + 1, j) in means:
                            other.append(np.abs(means[t, k] - means[t + 1, j]).max())
    assert len(own) > 100
    assert np.median(own) < 6 and np.median(other) > 40


def test_moving_flags_match_pixels():
    """Without camera motion a static object never takes over background pixels, a moving one
    (visible in both frames) does."""
    cfg = SyntheticConfig(camera_motion_share=0.0)
    static_leaks, moving_hits, moving_total = 0, 0, 0
    for v in _clips(cfg, 32):
        assert not v.camera_motion
        for t in range(v.gt.shape[0] - 1):
            newly = v.gt[t + 1][v.gt[t] == 0]  # ids on pixels that were background at t
            counts = np.bincount(newly.ravel(), minlength=v.moving.shape[1])
            area0 = np.bincount(v.gt[t].ravel(), minlength=v.moving.shape[1])
            area1 = np.bincount(v.gt[t + 1].ravel(), minlength=v.moving.shape[1])
            for k in range(1, v.moving.shape[1]):
                if not v.moving[t, k]:
                    static_leaks += counts[k]
                elif area0[k] >= 30 and area1[k] >= 30:
                    moving_total += 1
                    moving_hits += counts[k] > 0
    assert static_leaks == 0
    assert moving_total > 50 and moving_hits / moving_total > 0.9


def test_camera_motion_moves_the_background_but_not_the_flags():
    cfg = SyntheticConfig(camera_motion_share=1.0, moving_share=0.0)
    for v in _clips(cfg, 6):
        assert v.camera_motion and not v.moving.any()
        bg = (v.gt[0] == 0) & (v.gt[-1] == 0)
        diff = np.abs(v.frames[0].astype(int) - v.frames[-1].astype(int)).mean(-1)
        assert diff[bg].mean() > 8  # the scene shifted in the image


def test_camera_motion_share_respected():
    for share in (0.0, 0.5, 1.0):
        cfg = SyntheticConfig(camera_motion_share=share, min_objects=1, max_objects=1)
        got = np.mean([v.camera_motion for v in _clips(cfg, 80, h=32, w=64)])
        assert abs(got - share) < 0.15, (share, got)


def test_objects_enter_leave_and_occlude(batch):
    appear = vanish = grow = shrink = occluded = 0
    for v in batch:
        area = np.stack([np.bincount(g.ravel(), minlength=v.moving.shape[1]) for g in v.gt])
        a0, a1 = area[0, 1:], area[-1, 1:]
        appear += int(((a0 == 0) & (a1 > 0)).sum())
        vanish += int(((a0 > 0) & (a1 == 0)).sum())
        grow += int(((a0 > 0) & (a1 > 1.5 * a0)).sum())
        shrink += int(((a1 > 0) & (a0 > 1.5 * a1)).sum())
        # occlusion: a moving object's visible area changes while it stays inside the frame
        inner = v.gt[:, 1:-1, 1:-1]
        for k in range(1, v.moving.shape[1]):
            if v.moving[0, k] and (v.gt[:, 0, :] != k).all() and (v.gt[:, -1, :] != k).all():
                ak = (inner == k).reshape(len(inner), -1).sum(1)
                if (v.gt[:, :, [0, -1]] != k).all() and ak.min() > 0 and ak.max() > 1.3 * ak.min():
                    occluded += 1
    assert appear + vanish >= 3 and grow >= 5 and shrink >= 5
    assert occluded >= 2


def test_synthetic_preset_object_sizes():
    cfg = load_preset("synthetic")
    d = cfg.data
    fracs = []
    for v in _clips(d.synthetic, 16, h=d.height, w=d.width):
        area = np.bincount(v.gt[0].ravel())[1:]
        fracs.extend(area[area > 0] / (d.height * d.width))
    fracs = np.array(fracs)
    # not tiny, not filling the frame
    assert np.median(fracs) > 0.015 and fracs.max() < 0.25
