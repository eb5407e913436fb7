"""Background motion that is not an object, shared by benchmark versions 2 and 3: swaying regions
of the far layer (texture oscillating inside a fixed outline and flickering) and near-layer poles
moving with parallax. Both leave residual flow after the camera fit, so the flow-derived motion
masks get spurious segments on GT background, as in driving video (docs/data.md).

Each version keeps its own constants (:class:`ClutterSpec`) and texture function; the random
draws happen in one fixed order, so a version's clips depend only on its spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from diod_ray.data.synthetic.world import canvas_box, random_direction

# rng, h, w, scale -> uint8 [h, w, 3]
TextureFn = Callable[[np.random.Generator, int, int, float], np.ndarray]


@dataclass(frozen=True)
class ClutterSpec:
    """Lengths for a 64 x 128 frame, scaled with the clip's ``scale``."""

    # near-layer poles: clips with poles, poles per clip, width (share of W), image-speed factor
    pole_p: float
    poles: tuple[int, int]
    pole_width: tuple[float, float]
    parallax: tuple[float, float]
    # swaying regions: clips with them, regions per clip, size (share of sqrt(H*W)), oscillation
    # amplitude (px) and flicker amplitude (grey levels)
    sway_p: float
    sways: tuple[int, int]
    sway_size: tuple[float, float]
    sway_amp: tuple[float, float]
    flicker_amp: float


def sway_regions(rng, spec: ClutterSpec, ch, cw, scale, bounds, H, W, texture: TextureFn):
    """Regions of the far layer whose texture oscillates and flickers, centred inside ``bounds``
    (x0, y0, x1, y1 on the canvas): a list of (mask [ch,cw] bool, texture uint8 [ch,cw,3],
    amplitude vector px, phase, angular speed, flicker phase)."""
    if rng.random() >= spec.sway_p:
        return []
    out = []
    for _ in range(int(rng.integers(spec.sways[0], spec.sways[1] + 1))):
        r = rng.uniform(*spec.sway_size) * np.sqrt(H * W) / 2
        cx = rng.uniform(bounds[0], bounds[2])
        cy = rng.uniform(bounds[1], bounds[3])
        m = np.zeros((ch, cw), np.uint8)
        axes = (max(2, int(r * rng.uniform(0.7, 1.3))), max(2, int(r * rng.uniform(0.5, 1.0))))
        cv2.ellipse(m, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        amp = rng.uniform(*spec.sway_amp) * scale * np.array(random_direction(rng))
        tex = texture(rng, ch, cw, scale)
        out.append((m.astype(bool), tex, amp, rng.uniform(0, 2 * np.pi),
                    rng.uniform(0.9, 1.6), rng.uniform(0, 2 * np.pi)))  # fmt: skip
    return out


def apply_sways(canvas, sways, t, spec: ClutterSpec) -> None:
    """Paint frame ``t`` of each swaying region onto ``canvas`` (uint8 [ch,cw,3], in place),
    flickering by ``spec.flicker_amp``."""
    for mask, tex, amp, phase, omega, fphase in sways:
        d = amp * np.sin(omega * t + phase)
        m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float32)
        moved = cv2.warpAffine(tex, m, (tex.shape[1], tex.shape[0]),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        flick = spec.flicker_amp * np.sin(1.7 * omega * t + fphase)
        canvas[mask] = np.clip(moved[mask].astype(np.float32) + flick, 0, 255).astype(np.uint8)


def near_poles(rng, spec: ClutterSpec, cams, H, W, scale, texture: TextureFn):
    """The near layer: (canvas uint8 [ph,pw,3], alpha bool [ph,pw], its cameras [T,3]) or None.
    Its cameras move ``parallax`` times as far as the far layer's, so the affine camera fit, which
    follows the far layer, leaves them residual flow."""
    if rng.random() >= spec.pole_p:
        return None
    f = rng.uniform(*spec.parallax)
    near = cams.copy()
    near[:, :2] = cams[0, :2] + f * (cams[:, :2] - cams[0, :2])
    near[:, 2] = 1.0 + f * (cams[:, 2] - 1.0)
    x0, y0, cw, ch = canvas_box(near, H, W, pad=int(np.ceil(4 * scale)) + 2)
    near[:, 0] -= x0
    near[:, 1] -= y0
    img = np.zeros((ch, cw, 3), np.uint8)
    alpha = np.zeros((ch, cw), np.uint8)
    v0 = near[0, 0] - W / 2 / near[0, 2]
    for _ in range(int(rng.integers(spec.poles[0], spec.poles[1] + 1))):
        pw = max(2, int(rng.uniform(*spec.pole_width) * W))
        xc = rng.uniform(v0, v0 + W / near[0, 2])
        tilt = rng.uniform(-0.15, 0.15) * ch
        pts = np.array([[xc - pw / 2 + tilt, 0], [xc + pw / 2 + tilt, 0],
                        [xc + pw / 2 - tilt, ch - 1], [xc - pw / 2 - tilt, ch - 1]])  # fmt: skip
        m = np.zeros((ch, cw), np.uint8)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
        tex = texture(rng, ch, cw, scale)
        img[m > 0] = tex[m > 0]
        alpha |= m
    return img, alpha, near
