"""Drawing primitives of the synthetic benchmark: value noise, colours, texture patterns and
filled silhouettes (numpy + cv2), and the Voronoi cells of the v2 / v3 mosaics. Shared by
version 1 (``v1.py``), version 2 (``v2.py``) and version 3 (``v3_kinds.py``); moving code here must
not change a single draw (tests/data/test_synthetic.py pins version 1's output, the v2 / v3
clips hash the same).
"""

from __future__ import annotations

import cv2
import numpy as np

# ------------------------------------------------------------------------------------------
# textures
# ------------------------------------------------------------------------------------------


def value_noise(rng, h, w, cell, octaves=3) -> np.ndarray:
    """Smooth random field in [-1, 1] (multi-octave value noise), float32 [h,w]."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        grid = rng.random((gh, gw), dtype=np.float32) * 2 - 1
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(cell / 2, 1.0)
    return np.clip(out / total, -1, 1)


def hsv_colour(rng, s_range, v_range) -> np.ndarray:
    """One RGB colour (float32 [3], 0..255) drawn in HSV."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*s_range) * 255, rng.uniform(*v_range) * 255]]],
        np.float32,
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def any_colour(rng) -> np.ndarray:
    """One RGB colour (float32 [3], 0..255): any hue, saturation 0..1, value 0.15..1 (v2's one
    texture family and v3's kinds and background)."""
    return hsv_colour(rng, (0.0, 1.0), (0.15, 1.0))


def texture_pattern(rng, h, w, scale, kind=None) -> np.ndarray:
    """A texture pattern in [0, 1], float32 [h,w]: stripes, checker, dots, noise or flat."""
    kind = kind or rng.choice(["flat", "stripes", "checker", "dots", "noise"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3.0, 6.0) * scale
    if kind == "stripes":
        a = rng.uniform(0, np.pi)
        return (np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period) > 0).astype(
            np.float32
        )
    if kind == "checker":
        return (((xx // period) + (yy // period)) % 2).astype(np.float32)
    if kind == "dots":
        r = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2
        return (r < (period * 0.3) ** 2).astype(np.float32)
    if kind == "noise":
        return value_noise(rng, h, w, 2.0 * scale, 2) * 0.5 + 0.5
    return np.zeros((h, w), np.float32)


def shade(base, second, pattern, noise_amp, rng) -> np.ndarray:
    """base/second colours mixed by pattern, plus fine noise; uint8 [h,w,3]."""
    h, w = pattern.shape
    img = base[None, None] * (1 - pattern[..., None]) + second[None, None] * pattern[..., None]
    img += noise_amp * value_noise(rng, h, w, 1.5, 2)[..., None]
    # soft shading gradient, like a light from one side
    g = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-12, 12)
    return np.clip(img + g, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------


def shape_mask(rng, kind, h, w) -> np.ndarray:
    """A filled silhouette of ``kind`` inside an h x w box, bool [h,w]."""
    m = np.zeros((h, w), np.uint8)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    if kind == "ellipse":
        cv2.ellipse(
            m, (int(cx), int(cy)), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1
        )
    elif kind == "rectangle":
        a = rng.uniform(-0.35, 0.35)
        rw, rh = (w - 1) * 0.5 * 0.85, (h - 1) * 0.5 * 0.85
        corners = np.array([[-rw, -rh], [rw, -rh], [rw, rh], [-rw, rh]], np.float32)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
        pts = corners @ rot.T + [cx, cy]
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    elif kind == "polygon":  # regular-ish polygon, 3..7 vertices
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n)) if n > 4 else np.arange(n) * 2 * np.pi / n
        ang = ang + rng.uniform(0, 2 * np.pi)
        pts = np.stack([cx + cx * np.cos(ang), cy + cy * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    elif kind == "star":
        n = int(rng.integers(4, 7))
        ang = np.arange(2 * n) * np.pi / n + rng.uniform(0, np.pi)
        rad = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.45, 0.65))
        pts = np.stack([cx + cx * rad * np.cos(ang), cy + cy * rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    elif kind == "car":  # body + cabin (driving style)
        body_top = int(h * 0.4)
        cv2.rectangle(m, (0, body_top), (w - 1, int(h * 0.9)), 1, -1)
        cv2.rectangle(m, (int(w * 0.22), 0), (int(w * 0.75), body_top), 1, -1)
        r = max(1, int(h * 0.16))
        cv2.circle(m, (int(w * 0.22), h - 1 - r), r, 1, -1)
        cv2.circle(m, (int(w * 0.78), h - 1 - r), r, 1, -1)
    elif kind == "sign":  # pole + plate
        pw = max(1, w // 6)
        cv2.rectangle(m, (int(cx) - pw // 2, int(h * 0.4)), (int(cx) + pw // 2 + 1, h - 1), 1, -1)
        r = min(w // 2, int(h * 0.25))
        cv2.circle(m, (int(cx), r), max(1, r), 1, -1)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return m.astype(bool)


# ------------------------------------------------------------------------------------------
# mosaics
# ------------------------------------------------------------------------------------------


def voronoi_cells(rng, ch: int, cw: int, scale: float, side_range) -> tuple[np.ndarray, int]:
    """A Voronoi tessellation of a [ch,cw] canvas into cells of side about
    ``uniform(side_range) * scale``: int32 [ch,cw] cell index and the number of cells (versions
    2 and 3 draw their mosaics on it)."""
    side = rng.uniform(*side_range) * scale
    n = max(2, int(round(ch * cw / side**2)))
    seeds = rng.uniform([0, 0], [cw, ch], (n, 2)).astype(np.float32)  # [n,2] (x, y)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    best = np.full((ch, cw), np.inf, np.float32)
    cell = np.zeros((ch, cw), np.int32)
    for i, (sx, sy) in enumerate(seeds):
        d = (xx - sx) ** 2 + (yy - sy) ** 2
        closer = d < best
        best[closer] = d[closer]
        cell[closer] = i
    return cell, n
