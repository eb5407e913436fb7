"""Synthetic benchmark version 2: the conditions DIOD's claim depends on (docs/data.md).

Version 1 (``v1.py``) paints saturated objects on a desaturated floor and its flow masks
are nearly clean, so after burn-in W_fg already covers static objects as well as moving ones and
distillation has nothing to add. Version 2 keeps the renderer (world canvas, camera crop / warp,
depth order, moving flags = scene motion) and changes what is drawn:

- **One texture distribution** (:func:`texture`) for everything: the far background is a mosaic
  of cells (a Voronoi tessellation), each filled with a texture from the same distribution as the
  objects' textures. Colour statistics alone do not separate objects from background; shape
  (compact, closed silhouettes), coherence over time and motion do.
- **Static objects of the same kinds as moving ones**: shape, size and texture are drawn before
  and independently of whether the object moves.
- **Motion-mask noise of real driving video** (the masks still come from OpenCV flow,
  ``motion.py``; nothing here paints a mask):
  - parallax: near "poles" (tall textured strips across the frame) on a second layer that moves
    ``PARALLAX`` times faster than the far layer under camera motion; the affine camera fit
    follows the far layer, so the poles leave residual flow (false positives, GT background);
  - independently moving background: "swaying" regions whose texture oscillates inside a fixed
    outline (leaves, water) and flickers in brightness (false positives, GT background);
  - missed slow objects: a share of the movers moves below the flow threshold;
  - merged neighbours: a share of the movers travel as a convoy with a touching companion of the
    same velocity, which the flow sees as one segment.

Everything is a pure function of ``(cfg.seed, split, index)``; lengths are given for a 64 x 128
frame and scaled with ``sqrt(H * W / (64 * 128))`` as in version 1.
"""

from __future__ import annotations

import numpy as np

from diod_ray.config import SyntheticConfig
from diod_ray.data.synthetic.clutter import ClutterSpec, apply_sways, near_poles, sway_regions
from diod_ray.data.synthetic.draw import (
    any_colour,
    shape_mask,
    texture_pattern,
    value_noise,
    voronoi_cells,
)
from diod_ray.data.synthetic.world import (
    Sprite,
    SyntheticVideo,
    camera_and_canvas,
    camera_view,
    finish_video,
    frame0_view,
    paste_sprite,
    random_direction,
    split_seed,
    trajectory,
)

# far background: one mosaic cell per this many px (at 64x128) of the frame's side, on average
CELL_SIDE = (36.0, 64.0)
# share of the movers that move slower than the flow can see (px/frame at 64x128)
SLOW_P = 0.15
SLOW_SPEED = (0.15, 0.55)
# share of the movers that get a touching companion with the same velocity (merged masks)
CONVOY_P = 0.3
# near-layer poles: clips with poles, poles per clip, width (share of W), image-speed factor
POLE_P = 0.5
POLES = (1, 2)
POLE_WIDTH = (0.04, 0.1)
PARALLAX = (1.5, 2.5)
# swaying background regions: clips with them, regions per clip, size (share of sqrt(H*W)),
# oscillation amplitude (px at 64x128) and flicker amplitude (grey levels)
SWAY_P = 0.5
SWAYS = (1, 1)
SWAY_SIZE = (0.25, 0.45)
SWAY_AMP = (1.0, 2.5)
FLICKER_AMP = 18.0
CLUTTER = ClutterSpec(POLE_P, POLES, POLE_WIDTH, PARALLAX, SWAY_P, SWAYS, SWAY_SIZE, SWAY_AMP,
                      FLICKER_AMP)  # fmt: skip
TEXTURE_KINDS = ("flat", "stripes", "checker", "dots", "noise", "grain")


# ------------------------------------------------------------------------------------------
# the one texture distribution
# ------------------------------------------------------------------------------------------


def texture(rng, h: int, w: int, scale: float) -> np.ndarray:
    """A texture patch uint8 [h,w,3] from the distribution shared by objects and background:
    two colours mixed by a pattern (flat, stripes, checker, dots, noise, wood grain), fine noise
    and a shading gradient."""
    base = any_colour(rng)
    second = (
        any_colour(rng) if rng.random() < 0.5 else np.clip(base * rng.uniform(0.4, 0.8), 0, 255)
    )
    kind = TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))]
    if kind == "grain":
        yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
        warp = 3.0 * scale * value_noise(rng, h, w, 6.0 * scale, 2)
        pat = 0.5 + 0.5 * np.sin((yy + warp) * 2 * np.pi / (rng.uniform(2.5, 5.0) * scale))
    else:
        pat = texture_pattern(rng, h, w, scale, kind)
    img = base[None, None] * (1 - pat[..., None]) + second[None, None] * pat[..., None]
    img += rng.uniform(4.0, 20.0) * value_noise(rng, h, w, 1.5, 2)[..., None]
    g = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-12, 12)
    return np.clip(img + g, 0, 255).astype(np.uint8)


def _mosaic(rng, ch: int, cw: int, scale: float) -> np.ndarray:
    """The far background: a Voronoi mosaic of textured cells, uint8 [ch,cw,3]."""
    cell, n = voronoi_cells(rng, ch, cw, scale, CELL_SIDE)
    img = np.empty((ch, cw, 3), np.uint8)
    for i in range(n):
        ys, xs = np.nonzero(cell == i)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        tex = texture(rng, y1 - y0, x1 - x0, scale)
        img[ys, xs] = tex[ys - y0, xs - x0]
    return img


# ------------------------------------------------------------------------------------------
# objects
# ------------------------------------------------------------------------------------------


def _object(rng, cfg, T, H, W, scale, cams, direction, speed=None, size=None, start=None):
    """One textured object; ``direction`` None = static. Returns (Sprite, (w, h), start)."""
    diag = np.sqrt(H * W)
    if size is None:
        s = rng.uniform(cfg.min_size_frac, cfg.max_size_frac) * diag
        aspect = rng.uniform(0.55, 1.0)
        w, h = (s, s * aspect) if rng.random() < 0.5 else (s * aspect, s)
        size = (max(3, int(round(w))), max(3, int(round(h))))
    w, h = size
    kind = ("ellipse", "rectangle", "polygon", "star")[int(rng.integers(4))]
    mask = shape_mask(rng, kind, h, w)
    colour = texture(rng, h, w, scale)
    view = frame0_view(cams, H, W)
    if start is None:
        start = (
            rng.uniform(view[0] + 0.1 * view[2], view[0] + 0.9 * view[2]),
            rng.uniform(view[1] + 0.1 * view[3], view[1] + 0.9 * view[3]),
        )
    scfg = cfg
    if speed is not None:  # trajectory draws speed in [0.4, 1] * max_speed_px: pin it
        scfg = _FixedSpeed(speed / scale)
    pos, moves = trajectory(rng, scfg, T, (w, h), start, view, scale, direction)
    return Sprite(mask, colour, pos, moves), (w, h), start


class _FixedSpeed:
    """A stand-in config for trajectory whose speed draw lands in a narrow band around
    ``speed`` (uniform(0.4, 1.0) * max_speed_px with max_speed_px = speed / 0.7)."""

    def __init__(self, speed: float):
        self.max_speed_px = speed / 0.7


def _objects(rng, cfg, T, H, W, scale, cams) -> list[Sprite]:
    n_obj = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects: list[Sprite] = []
    while len(objects) < n_obj:
        moving = rng.random() < cfg.moving_share
        direction = random_direction(rng) if moving else None
        speed = None
        if moving and rng.random() < SLOW_P:
            speed = rng.uniform(*SLOW_SPEED) * scale
        ob, (w, h), start = _object(rng, cfg, T, H, W, scale, cams, direction, speed)
        objects.append(ob)
        if moving and len(objects) < n_obj and rng.random() < CONVOY_P:
            # a companion touching the leader side by side (perpendicular to the motion), same
            # velocity: flow sees one moving blob, GT two objects
            px, py = -direction[1], direction[0]
            gap = 0.5 * (abs(px) * w + abs(py) * h) * 1.3  # centre distance: overlapping a little
            lead = ob.pos[0] + (w / 2, h / 2)  # the leader's frame-0 centre (after any shift)
            view = frame0_view(cams, H, W)
            inward = (view[0] + view[2] / 2 - lead[0]) * px + (view[1] + view[3] / 2 - lead[1]) * py
            sgn = 1.0 if inward >= 0 else -1.0  # on the side facing the view's centre
            c2 = (lead[0] + sgn * px * gap, lead[1] + sgn * py * gap)
            size2 = (max(3, int(w * rng.uniform(0.7, 1.0))), max(3, int(h * rng.uniform(0.7, 1.0))))
            mate, _, _ = _object(rng, cfg, T, H, W, scale, cams, None, None, size2, c2)
            # same path as the leader: offset its positions by the leader's displacement
            mate.pos = mate.pos[:1] + (ob.pos - ob.pos[:1])
            mate.moves = ob.moves.copy()
            objects.append(mate)
    order = rng.permutation(len(objects))  # depth order independent of motion
    return [objects[i] for i in order]


# ------------------------------------------------------------------------------------------
# the clip
# ------------------------------------------------------------------------------------------


def generate_video_v2(
    cfg: SyntheticConfig, height: int, width: int, split: str, index: int
) -> SyntheticVideo:
    """Render clip ``index`` of ``split`` (version 2); deterministic from (seed, split, index)."""
    rng = split_seed(cfg.seed, f"v2/{split}", index)
    T = cfg.frames_per_video
    scale, camera_motion, cams, cw, ch = camera_and_canvas(rng, cfg, height, width)
    background = _mosaic(rng, ch, cw, scale)
    view = frame0_view(cams, height, width)
    bounds = (view[0], view[1], view[0] + view[2], view[1] + view[3])
    sways = sway_regions(rng, CLUTTER, ch, cw, scale, bounds, height, width, texture)
    objects = _objects(rng, cfg, T, height, width, scale, cams)
    poles = near_poles(rng, CLUTTER, cams, height, width, scale, texture)
    frames = np.empty((T, height, width, 3), np.uint8)
    gt = np.empty((T, height, width), np.int32)
    for t in range(T):
        canvas = background.copy()
        apply_sways(canvas, sways, t, CLUTTER)
        ids = np.zeros((ch, cw), np.int32)
        for k, ob in enumerate(objects, start=1):  # list order = depth order (last on top)
            paste_sprite(canvas, ids, ob, t, k)
        frames[t], gt[t] = camera_view(canvas, ids, cams[t], height, width, camera_motion)
        if poles is not None:  # the near layer occludes everything behind it
            img, alpha, near = poles
            p_img, p_alpha = camera_view(img, alpha, near[t], height, width, camera_motion)
            cover = p_alpha > 0
            frames[t][cover] = p_img[cover]
            gt[t][cover] = 0
    return finish_video(
        rng, frames, gt, objects, camera_motion, f"synthetic-v2-{split}-{index:06d}"
    )
