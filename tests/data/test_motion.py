"""Motion masks from real OpenCV flow, and the MaskQuality accumulator."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from diod_ray.config import FlowConfig, SyntheticConfig, load_preset
from diod_ray.data.inspection.mask_quality import MaskQuality
from diod_ray.data.motion import motion_masks
from diod_ray.data.synthetic.render import generate_video

H, W, T = 64, 128, 5


def _texture(h, w, seed=0):
    """A textured grey-brown background, uint8 [h,w,3]."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for cell, amp in ((12, 40), (5, 25), (2, 12)):
        g = rng.random((h // cell + 2, w // cell + 2), dtype=np.float32)
        img += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 60, 0, 255)
    return np.stack([img, img * 0.9, img * 0.7], -1).astype(np.uint8)


def _square_clip(speed: float, seed=0):
    """A textured static background with one 16x16 patterned square moving right."""
    bg = _texture(H, W, seed)
    frames = np.repeat(bg[None], T, 0)
    gt = np.zeros((T, H, W), bool)
    yy, xx = np.mgrid[0:16, 0:16]
    patch = np.stack([200 + 40 * ((xx // 4 + yy // 4) % 2), 40 + 0 * xx, 60 + 0 * xx], -1)
    for t in range(T):
        x = int(round(40 + speed * t))
        frames[t, 24:40, x : x + 16] = patch
        gt[t, 24:40, x : x + 16] = True
    return frames, gt


# Farneback's Gaussian window smears motion ~2 px beyond the square: IoU ~0.70 (DIS ~0.8)
@pytest.mark.parametrize("method,min_iou", [("dis", 0.7), ("farneback", 0.62)])
def test_one_moving_square_gives_one_segment(method, min_iou):
    frames, gt = _square_clip(speed=2.0)
    masks = motion_masks(frames, FlowConfig(method=method), min_pixels=12)
    assert masks.shape == (T, H, W) and masks.dtype == np.int32
    for t in range(T):
        assert masks[t].max() == 1, f"frame {t}: {masks[t].max()} segments"
        seg = masks[t] == 1
        iou = (seg & gt[t]).sum() / (seg | gt[t]).sum()
        assert iou > min_iou, f"frame {t}: IoU {iou:.2f}"


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_static_object_gives_no_segment(method):
    frames, _ = _square_clip(speed=0.0)
    assert motion_masks(frames, FlowConfig(method=method), min_pixels=12).max() == 0


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_camera_pan_is_compensated(method):
    """A static textured scene seen by a panning + zooming camera: few residual pixels."""
    big = _texture(H + 40, W + 40, seed=3)
    frames = []
    for t in range(T):
        z = 1.0 + 0.01 * t
        m = np.array([[z, 0, -20 - 2.0 * t], [0, z, -20 - 1.0 * t]], np.float64)
        frames.append(cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_LINEAR))
    masks = motion_masks(np.stack(frames), FlowConfig(method=method), min_pixels=12)
    assert (masks > 0).mean() < 0.02
    # without compensation much of the frame moves (Farneback underestimates the pan)
    raw = motion_masks(np.stack(frames), FlowConfig(method=method, camera_model="none"), 12)
    assert (raw > 0).mean() > 0.2


def test_bad_frames_raise():
    with pytest.raises(ValueError, match="uint8"):
        motion_masks(np.zeros((3, 8, 8, 3), np.float32), FlowConfig(), 0)
    with pytest.raises(ValueError, match="method"):
        motion_masks(np.zeros((3, 8, 8, 3), np.uint8), FlowConfig(method="raft"), 0)  # type: ignore[arg-type]
    assert motion_masks(np.zeros((1, 8, 8, 3), np.uint8), FlowConfig(), 0).max() == 0


def test_synthetic_masks_are_noisy_like_the_paper_says():
    """Over 32 clips: moving objects found, static ones missed, spurious segments under camera
    motion exist (realistic noise, not ground truth). Version 1 of the benchmark: version 2's
    much noisier masks are checked against it in test_synthetic.py."""
    cfg = load_preset("synthetic").data
    cfg.synthetic.version = 1
    total, camera = MaskQuality(cfg.min_mask_pixels), MaskQuality(cfg.min_mask_pixels)
    for i in range(32):
        v = generate_video(cfg.synthetic, cfg.height, cfg.width, "test", i)
        m = motion_masks(v.frames, cfg.flow, cfg.min_mask_pixels)
        total.update(v.gt, v.moving, m)
        if v.camera_motion:
            camera.update(v.gt, v.moving, m)
    s, c = total.summary(), camera.summary()
    assert s["moving_recall"] > 0.6, s
    assert s["static_recall"] < 0.2, s
    assert c["frames"] > 0 and c["spurious_per_frame"] > 0, c
    assert s["segment_precision"] < 0.98  # noisy, not ground truth


def test_smoke_preset_masks_are_sane():
    cfg = load_preset("smoke").data
    found = 0
    for i in range(8):
        v = generate_video(cfg.synthetic, cfg.height, cfg.width, "train", i)
        m = motion_masks(v.frames, cfg.flow, cfg.min_mask_pixels)
        assert m.shape == v.gt.shape
        assert (m > 0).mean() < 0.5
        found += int(m.max() > 0)
    assert found >= 4


def test_mask_quality_counts():
    gt = np.zeros((1, 20, 20), np.int32)
    gt[0, 0:5, 0:5] = 1  # moving, found
    gt[0, 10:15, 0:5] = 2  # static, missed
    gt[0, 0:5, 10:15] = 3  # moving, merged with 4
    gt[0, 0:5, 15:20] = 4  # moving
    moving = np.array([[False, True, False, True, True]])
    motion = np.zeros_like(gt)
    motion[0, 0:5, 0:5] = 1
    motion[0, 0:5, 9:20] = 2  # covers 3 and 4 (IoU 25/55 with each)
    motion[0, 15:20, 15:20] = 3  # spurious, on background
    q = MaskQuality()
    q.update(gt, moving, motion)
    s = q.summary()
    assert s["frames"] == 1 and s["gt_moving_objects"] == 3 and s["gt_static_objects"] == 1
    assert s["moving_recall"] == pytest.approx(1 / 3)
    assert s["static_recall"] == 0.0
    assert s["spurious_per_frame"] == 1.0
    assert s["merged_share"] == pytest.approx(1 / 3)
    assert s["segment_precision"] == pytest.approx(1 / 3)
    assert s["moving_mean_best_iou"] == pytest.approx((1 + 2 * 25 / 55) / 3)
    with pytest.raises(ValueError, match="moving"):
        q.update(gt, moving[:, :3], motion)


def test_mask_quality_ignores_tiny_gt():
    gt = np.zeros((2, 10, 10), np.int32)
    gt[:, 0:2, 0:2] = 1
    q = MaskQuality(min_gt_pixels=5)
    q.update(gt, np.array([[False, True]] * 2), np.zeros_like(gt))
    assert q.summary()["gt_moving_objects"] == 0


def test_generator_style_driving_gives_masks():
    cfg = SyntheticConfig(style="driving")
    q = MaskQuality(12)
    for i in range(6):
        v = generate_video(cfg, H, W, "test", i)
        q.update(v.gt, v.moving, motion_masks(v.frames, FlowConfig(), 12))
    assert q.summary()["moving_recall"] > 0.3
