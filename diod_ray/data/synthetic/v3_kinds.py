"""Synthetic benchmark version 3, what it draws: object kinds and the textures of objects and
background (docs/data.md). The scene (placement, motion, clutter, the clip) is
:mod:`diod_ray.data.synthetic.v3`, whose docstring says why version 3 draws these.

- **Object kinds** (:data:`KINDS`), each with its own shape family and its own texture family of
  fine two-colour patterns: ``car`` (rounded boxes, plaid grid), ``person`` (tall capsules /
  ellipses, polka dots), ``sign`` (diamonds, triangles, octagons, concentric rings). An object's
  appearance (:class:`Spec`: kind, shape, size, texture) is drawn before and independently of
  whether it moves.
- **Background** from a different texture family: a Voronoi mosaic of cells filled with smooth
  two-colour camouflage blobs (:func:`mosaic`). Every texture takes its two colours from one
  colour distribution (:func:`colour_pair`), so colour alone does not separate objects from
  background; texture structure does. :func:`paint_object_patches` repaints a share of the
  background with object-kind textures in object-sized patches.

Lengths are given for a 64 x 128 frame and scaled by ``scale``.
"""

from __future__ import annotations

import cv2
import numpy as np

from diod_ray.data.synthetic.draw import any_colour, value_noise, voronoi_cells

KINDS = ("car", "person", "sign")
# object area (px at 64x128; the stride-4 grid cell is 16 px): uniform in this range
OBJECT_AREA = (260.0, 760.0)
# aspect of each kind's box: car width / height, person height / width, sign width / height
CAR_ASPECT = (1.5, 2.1)
PERSON_ASPECT = (1.8, 2.4)
SIGN_ASPECT = (0.9, 1.1)
# share of each shape's box its silhouette fills (to turn an area into a box)
FILL = {"rounded_box": 0.93, "capsule": 0.9, "ellipse": 0.785, "diamond": 0.5, "triangle": 0.5,
        "octagon": 0.83}  # fmt: skip
# two colours of a texture differ by at least this much in luminance (grey levels)
PAIR_MIN_LUMA = 60.0
# far background: one mosaic cell per this many px (at 64x128) of the frame's side, on average
CELL_SIDE = (36.0, 64.0)
# bg_object_texture_share paints patches of a finer tessellation (side in px at 64x128, about
# an object's size), so the painted share lands close to the asked one
PATCH_SIDE = (14.0, 22.0)
# background camouflage blobs: noise cell size (px at 64x128)
BLOB_CELL = (8.0, 20.0)


# ------------------------------------------------------------------------------------------
# colours and textures
# ------------------------------------------------------------------------------------------


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def colour_pair(rng) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB colours (float32 [3]) of one texture, from the one colour distribution of every
    texture (objects and background alike); they differ in luminance, so the pattern is visible
    to the grey-level flow."""
    a = any_colour(rng)
    for _ in range(16):
        b = any_colour(rng)
        if abs(_luma(a) - _luma(b)) >= PAIR_MIN_LUMA:
            return a, b
    return a, (a * 0.3 if _luma(a) > 127 else np.clip(a + 120.0, 0, 255)).astype(np.float32)


def _render(rng, pattern: np.ndarray, scale: float) -> np.ndarray:
    """Two colours mixed by ``pattern`` [h,w] in [0,1], fine noise and a shading gradient, the
    same finish for every texture; uint8 [h,w,3]."""
    h, w = pattern.shape
    a, b = colour_pair(rng)
    img = a[None, None] * (1 - pattern[..., None]) + b[None, None] * pattern[..., None]
    img += rng.uniform(3.0, 8.0) * value_noise(rng, h, w, 1.5, 2)[..., None]
    g = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-12, 12)
    return np.clip(img + g, 0, 255).astype(np.uint8)


def kind_texture(rng, kind: str, h: int, w: int, scale: float) -> np.ndarray:
    """An object texture of ``kind``, uint8 [h,w,3]: a fine two-colour pattern of the kind's
    family (car: plaid grid, person: polka dots, sign: concentric rings)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "car":
        period = rng.uniform(4.0, 6.0) * scale
        line = max(1.0, 0.35 * period)
        ox, oy = rng.uniform(0, period, 2)
        pat = (((xx + ox) % period) < line) | (((yy + oy) % period) < line)
    elif kind == "person":
        period = rng.uniform(3.5, 5.5) * scale
        ox, oy = rng.uniform(0, period, 2)
        r = (((xx + ox) % period) - period / 2) ** 2 + (((yy + oy) % period) - period / 2) ** 2
        pat = r < (period * 0.32) ** 2
    elif kind == "sign":
        period = rng.uniform(3.0, 5.0) * scale
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2)
        pat = np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi)) > 0
    else:
        raise ValueError(f"unknown object kind {kind!r}")
    return _render(rng, pat.astype(np.float32), scale)


def background_texture(rng, h: int, w: int, scale: float) -> np.ndarray:
    """A background texture, uint8 [h,w,3]: smooth two-colour camouflage blobs (a thresholded
    low-frequency noise with soft edges), the same colours and finish as the objects'."""
    noise = value_noise(rng, h, w, rng.uniform(*BLOB_CELL) * scale, 2)
    pat = 1.0 / (1.0 + np.exp(-(noise - rng.uniform(-0.15, 0.15)) / 0.05))
    return _render(rng, pat.astype(np.float32), scale)


def _cells_texture(img, cell, n, seeds, paint) -> None:
    """Fill each chosen cell i of ``cell`` [ch,cw] with ``paint(rng_i, h, w)`` (its own stream)."""
    for i in range(n):
        if seeds[i] is None:
            continue
        ys, xs = np.nonzero(cell == i)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        tex = paint(np.random.default_rng(int(seeds[i])), y1 - y0, x1 - x0)
        img[ys, xs] = tex[ys - y0, xs - x0]


def mosaic(rng, ch: int, cw: int, scale: float) -> np.ndarray:
    """The far background, uint8 [ch,cw,3]: a Voronoi mosaic of background-texture cells, each
    drawn from its own stream."""
    cell, n = voronoi_cells(rng, ch, cw, scale, CELL_SIDE)
    seeds = list(rng.integers(0, 2**63, n))
    img = np.empty((ch, cw, 3), np.uint8)
    _cells_texture(img, cell, n, seeds, lambda r, h, w: background_texture(r, h, w, scale))
    return img


def paint_object_patches(rng, img: np.ndarray, share: float, scale: float) -> None:
    """Repaint patches of a finer tessellation covering about ``share`` of ``img`` [ch,cw,3]
    (patches taken in a random order, each kept when it brings the painted area closer to the
    target) with object-kind textures, in place."""
    if share <= 0:
        return
    ch, cw = img.shape[:2]
    cell, n = voronoi_cells(rng, ch, cw, scale, PATCH_SIDE)
    cell_seeds = rng.integers(0, 2**63, n)
    area = np.bincount(cell.ravel(), minlength=n)
    seeds: list = [None] * n
    covered, target = 0, share * ch * cw
    for i in rng.permutation(n):
        if abs(covered + area[i] - target) < abs(covered - target):
            seeds[i] = cell_seeds[i]
            covered += area[i]

    def paint(r, h, w):
        return kind_texture(r, KINDS[int(r.integers(len(KINDS)))], h, w, scale)

    _cells_texture(img, cell, n, seeds, paint)


# ------------------------------------------------------------------------------------------
# object shapes
# ------------------------------------------------------------------------------------------


def _shape_for(rng, kind: str) -> str:
    if kind == "car":
        return "rounded_box"
    if kind == "person":
        return ("capsule", "ellipse")[int(rng.integers(2))]
    return ("diamond", "triangle", "octagon")[int(rng.integers(3))]


def kind_mask(rng, shape: str, h: int, w: int) -> np.ndarray:
    """A filled silhouette of ``shape`` inside an h x w box, bool [h,w]."""
    m = np.zeros((h, w), np.uint8)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    if shape == "rounded_box":
        r = max(1, int(round(rng.uniform(0.2, 0.35) * min(h, w))))
        cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 1, -1)
        cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 1, -1)
        for x, y in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(m, (x, y), r, 1, -1)
    elif shape == "capsule":
        r = max(1, (w - 1) // 2)
        cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 1, -1)
        cv2.circle(m, (int(round(cx)), r), r, 1, -1)
        cv2.circle(m, (int(round(cx)), h - 1 - r), r, 1, -1)
    elif shape == "ellipse":
        cv2.ellipse(m, (int(round(cx)), int(round(cy))), (max(1, int(cx)), max(1, int(cy))),
                    0, 0, 360, 1, -1)  # fmt: skip
    elif shape == "diamond":
        pts = [[cx, 0], [w - 1, cy], [cx, h - 1], [0, cy]]
        cv2.fillPoly(m, [np.round(np.array(pts)).astype(np.int32)], 1)
    elif shape == "triangle":
        pts = [[cx, 0], [w - 1, h - 1], [0, h - 1]]
        if rng.random() < 0.5:  # pointing down
            pts = [[0, 0], [w - 1, 0], [cx, h - 1]]
        cv2.fillPoly(m, [np.round(np.array(pts)).astype(np.int32)], 1)
    elif shape == "octagon":
        ang = np.arange(8) * np.pi / 4 + np.pi / 8
        pts = np.stack([cx + cx * np.cos(ang) / np.cos(np.pi / 8),
                        cy + cy * np.sin(ang) / np.cos(np.pi / 8)], 1)  # fmt: skip
        pts = np.clip(pts, 0, [w - 1, h - 1])
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.astype(bool)


def _box_size(rng, kind: str, shape: str, scale: float) -> tuple[int, int]:
    """(w, h) of the sprite box for an area drawn from OBJECT_AREA."""
    box = rng.uniform(*OBJECT_AREA) * scale**2 / FILL[shape]
    if kind == "car":
        aspect = rng.uniform(*CAR_ASPECT)  # w / h
    elif kind == "person":
        aspect = 1.0 / rng.uniform(*PERSON_ASPECT)
    else:
        aspect = rng.uniform(*SIGN_ASPECT)
    h = np.sqrt(box / aspect)
    return max(5, int(round(h * aspect))), max(5, int(round(h)))


class Spec:
    """An object's appearance, drawn before (and independently of) whether it moves."""

    def __init__(self, rng, scale: float):
        self.kind = KINDS[int(rng.integers(len(KINDS)))]
        shape = _shape_for(rng, self.kind)
        self.w, self.h = _box_size(rng, self.kind, shape, scale)
        self.mask = kind_mask(rng, shape, self.h, self.w)
        self.texture = kind_texture(rng, self.kind, self.h, self.w, scale)
