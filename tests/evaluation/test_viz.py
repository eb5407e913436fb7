"""Pictures: palette, overlays, grids, training panel, PNG round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from diod_ray import viz


def test_palette_is_fixed_distinct_and_background_black():
    pal = viz.palette(64)
    assert pal.dtype == np.uint8 and pal.shape == (64, 3)
    assert (pal[0] == 0).all()
    assert len({tuple(c) for c in pal[1:46]}) == 45  # 45 slots: all distinct
    assert not (pal[1:] == 0).all(1).any()  # no object is drawn black
    assert np.array_equal(pal, viz.palette(64))
    # ids beyond the palette wrap around but never to the background colour
    assert (viz.colourise(np.array([5000, 70000])) != 0).any(-1).all()


def test_normalised_frames_round_trip_to_uint8():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)
    normalised = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [T,3,H,W]
    assert np.array_equal(viz.to_uint8_frames(normalised), u8)
    assert np.array_equal(viz.to_uint8_frames(u8[0]), u8[:1])


def test_slot_overlay_keeps_background_and_paints_objects_at_grid_resolution():
    frames = np.full((2, 8, 16, 3), 100, np.uint8)
    labels = np.zeros((2, 2, 4), np.int64)  # the attention grid: 4x smaller
    labels[0, 0, 0] = 3
    out = viz.slot_overlay(frames, labels, alpha=0.5, contours=False)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (out[1] == 100).all()  # all background: untouched
    assert (out[0, 4:, :] == 100).all() and (out[0, :, 4:] == 100).all()
    expect = np.round(0.5 * 100 + 0.5 * viz.palette(4)[3].astype(float))
    assert np.abs(out[0, :4, :4].astype(float) - expect).max() <= 1
    single = viz.slot_overlay(frames[0], labels[0])
    assert single.shape == (8, 16, 3)


def test_example_grid_layout_and_inputs():
    T, H, W = 3, 16, 32
    frames = torch.rand(T, 3, H, W) * 2 - 1
    lab = torch.randint(0, 5, (T, H // 4, W // 4))
    fg = torch.rand(T, 4, 8)
    full = viz.example_grid(frames, motion=lab, pseudo=lab, slots=lab, fg=fg, gt=lab, pad=2)
    band = max(12, min(24, H // 4))
    assert full.dtype == np.uint8 and full.ndim == 3 and full.shape[2] == 3
    assert full.shape == (6 * (H + band) + 5 * 2, T * W + (T - 1) * 2, 3)
    # the slots row names whose slots they are (evaluate --weights teacher shows the teacher's)
    teacher = viz.example_grid(
        frames, motion=lab, pseudo=lab, slots=lab, fg=fg, gt=lab, pad=2,
        slots_title="teacher slots",
    )  # fmt: skip
    differs = np.nonzero((teacher != full).any(axis=(1, 2)))[0]
    title_band = (4 * (H + band + 2), 4 * (H + band + 2) + band)  # the 5th row's title band
    assert len(differs) and title_band[0] <= differs.min() and differs.max() < title_band[1]
    only = viz.example_grid(frames, titles=False)
    assert only.shape == (H, T * W + (T - 1) * 2, 3)
    with pytest.raises(ValueError, match="label maps for"):
        viz.example_grid(frames, slots=lab[:2])


def test_training_panel_from_a_real_model_output():
    from diod_ray.config import load_preset
    from diod_ray.model import build_model

    cfg = load_preset("smoke")
    model = build_model(cfg).eval()
    B, T, H, W = 2, 3, cfg.data.height, cfg.data.width
    batch = {
        "weak": torch.rand(B, T, 3, H, W) * 2 - 1,
        "motion": torch.randint(0, 3, (B, T, H, W)),
    }
    with torch.no_grad():
        out = model(batch["weak"])
    img = viz.training_panel(batch, out, out, model.bg_index)
    no_teacher = viz.training_panel(batch, out, None, model.bg_index)
    assert img.dtype == np.uint8 and img.shape[1] == T * W + (T - 1) * 2
    assert img.shape[0] > no_teacher.shape[0]  # the teacher row is there


def test_write_png_round_trip(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    viz.write_png(tmp_path / "a.png", img)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "a.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, img)
    ids = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    viz.write_png(tmp_path / "ids.png", ids)
    assert np.array_equal(cv2.imread(str(tmp_path / "ids.png"), cv2.IMREAD_UNCHANGED), ids)
    sheet = viz.contact_sheet(np.zeros((5, 4, 6, 3), np.uint8), columns=2, pad=1)
    assert sheet.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
