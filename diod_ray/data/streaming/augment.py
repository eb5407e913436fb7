"""Per-clip augmentation in plain numpy/OpenCV (runs inside Ray Data ``map_batches``).

One geometry per clip (random resized crop with probability ``crop_p``, horizontal flip with
``flip_p``) is applied identically to every frame and to the motion masks (nearest). The weak
view (teacher) is that geometry only; the strong view (student) adds colour jitter, grayscale and
solarize, each drawn once per clip and applied identically to all of its frames. Reference
values: docs/reference-notes.md §4 (crop p=0.4, scale [0.75, 1], flip p=0.4; jitter
0.4/0.4/0.4/0.1 with p=0.8, grayscale p=0.2, solarize threshold 0.5 with p=0.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from diod_ray.config import AugmentConfig


@dataclass
class Geometry:
    """Crop box (y0, x0, h, w) in input pixels, or None for the whole frame; horizontal flip."""

    crop: tuple[int, int, int, int] | None
    flip: bool


@dataclass
class Colour:
    """Strong-view colour parameters of one clip (None / False = not applied)."""

    brightness: float | None
    contrast: float | None
    saturation: float | None
    hue: float | None
    order: tuple[int, ...]
    grayscale: bool
    solarize: bool


def sample_crop_box(
    rng: np.random.Generator, height: int, width: int, cfg: AugmentConfig
) -> tuple[int, int, int, int] | None:
    """torchvision RandomResizedCrop box: area share in [scale_min, scale_max], aspect w/h fixed
    at ``crop_ratio`` (0 = the frame's own). Falls back to the whole frame after 10 tries."""
    ratio = cfg.crop_ratio if cfg.crop_ratio > 0 else width / height
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(cfg.crop_scale_min, cfg.crop_scale_max)
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return y0, x0, h, w
    return None


def sample_geometry(
    rng: np.random.Generator, height: int, width: int, cfg: AugmentConfig
) -> Geometry:
    crop = sample_crop_box(rng, height, width, cfg) if rng.random() < cfg.crop_p else None
    flip = bool(rng.random() < cfg.flip_p)
    return Geometry(crop=crop, flip=flip)


def sample_colour(rng: np.random.Generator, cfg: AugmentConfig) -> Colour:
    """ColorJitter factors as torchvision draws them (brightness/contrast/saturation in
    [max(0, 1-x), 1+x], hue in [-x, x], random order), jitter with ``jitter_p``."""
    b = c = s = h = None
    if rng.random() < cfg.jitter_p:
        if cfg.brightness > 0:
            b = float(rng.uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness))
        if cfg.contrast > 0:
            c = float(rng.uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast))
        if cfg.saturation > 0:
            s = float(rng.uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation))
        if cfg.hue > 0:
            h = float(rng.uniform(-cfg.hue, cfg.hue))
    order = tuple(int(i) for i in rng.permutation(4))
    gray = bool(rng.random() < cfg.grayscale_p)
    sol = bool(rng.random() < cfg.solarize_p)
    return Colour(b, c, s, h, order, gray, sol)


def apply_geometry(
    x: np.ndarray, geom: Geometry, nearest: bool, out_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """Crop-resize-flip every frame of ``x`` [T,H,W] or [T,H,W,C] the same way.

    Frames use bilinear (INTER_AREA when shrinking), masks (``nearest``) INTER_NEAREST. The output
    size is ``out_hw`` or the input size."""
    t, h, w = x.shape[:3]
    oh, ow = out_hw or (h, w)
    if geom.crop is not None:
        y0, x0, ch, cw = geom.crop
        x = x[:, y0 : y0 + ch, x0 : x0 + cw]
    if x.shape[1:3] != (oh, ow):
        x = resize_frames(x, oh, ow, nearest)
    if geom.flip:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x)


def resize_frames(x: np.ndarray, oh: int, ow: int, nearest: bool) -> np.ndarray:
    """Resize each frame of ``x`` [T,H,W(,C)] to (oh, ow)."""
    h, w = x.shape[1:3]
    if nearest:
        interp = cv2.INTER_NEAREST
    elif oh < h and ow < w:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    src = x.astype(np.uint16) if (nearest and x.dtype == np.int32 and x.max() < 65536) else x
    out = np.stack([cv2.resize(f, (ow, oh), interpolation=interp) for f in src])
    return out.astype(x.dtype, copy=False)


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of float RGB [...,3] -> [...,1]."""
    return (0.299 * x[..., 0:1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]).astype(np.float32)


def _adjust_hue(x: np.ndarray, shift: float) -> np.ndarray:
    """Rotate hue by ``shift`` turns (torchvision's hue_factor) on float RGB in [0,1]."""
    out = np.empty_like(x)
    for i, f in enumerate(x):
        hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360)
        hsv[..., 0] = np.mod(hsv[..., 0] + shift * 360.0, 360.0)
        out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def apply_colour(frames: np.ndarray, col: Colour, solarize_threshold: float = 0.5) -> np.ndarray:
    """Strong colour transform of uint8 [T,H,W,3] -> uint8 [T,H,W,3], identical over frames."""
    x = frames.astype(np.float32) * (1.0 / 255.0)
    for op in col.order:
        if op == 0 and col.brightness is not None:
            x = np.clip(x * col.brightness, 0.0, 1.0)
        elif op == 1 and col.contrast is not None:
            mean = _gray(x).mean(axis=(1, 2, 3), keepdims=True)  # per frame, as torchvision
            x = np.clip(col.contrast * x + (1 - col.contrast) * mean, 0.0, 1.0)
        elif op == 2 and col.saturation is not None:
            x = np.clip(col.saturation * x + (1 - col.saturation) * _gray(x), 0.0, 1.0)
        elif op == 3 and col.hue is not None:
            x = _adjust_hue(x, col.hue)
    if col.grayscale:
        x = np.repeat(_gray(x), 3, axis=-1)
    if col.solarize:
        x = np.where(x >= solarize_threshold, 1.0 - x, x)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def random_window(rng: np.random.Generator, t: int, length: int) -> slice:
    """A random window of ``length`` consecutive frames out of ``t`` (the whole clip if shorter)."""
    if length <= 0 or length >= t:
        return slice(0, t)
    start = int(rng.integers(0, t - length + 1))
    return slice(start, start + length)


def augment_clip(
    frames: np.ndarray,
    motion: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    out_hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One clip -> (weak uint8 [T,H,W,3], strong uint8 [T,H,W,3], motion [T,H,W]).

    Both views share one geometry; masks follow it with nearest interpolation."""
    t, h, w = frames.shape[:3]
    geom = sample_geometry(rng, h, w, cfg)
    weak = apply_geometry(frames, geom, nearest=False, out_hw=out_hw)
    mot = apply_geometry(motion, geom, nearest=True, out_hw=out_hw)
    strong = apply_colour(weak, sample_colour(rng, cfg), cfg.solarize_threshold)
    return weak, strong, mot
