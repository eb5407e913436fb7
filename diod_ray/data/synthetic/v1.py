"""The embedded benchmark: procedurally generated tabletop or driving clips with ground truth.

A clip is a world canvas (textured background, larger than the frame) on which objects are pasted
at their world positions for every frame; the camera then crops (static camera) or warps
(pan / zoom, ``cv2.warpAffine``) the canvas into the ``H x W`` frame. Everything is numpy + cv2.

Ground truth per frame: an instance-id map (0 = background, ids 1..G fixed for the whole clip,
topmost object wins: depth order) and ``moving[t, id]``: whether the object moves *in the scene*
(world coordinates) over the interval the flow of frame t covers (t -> t+1, and t-1 -> t for the
last frame). Under camera motion a static object moves in the image but is not "moving".

Lengths scale with the frame: speeds and sizes are given for a 64 x 128 frame and multiplied by
``sqrt(H * W / (64 * 128))``.
"""

from __future__ import annotations

import numpy as np

from diod_ray.config import SyntheticConfig
from diod_ray.data.synthetic.draw import (
    hsv_colour,
    shade,
    shape_mask,
    texture_pattern,
    value_noise,
)
from diod_ray.data.synthetic.world import (
    BG_TEXTURE_AMP,
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


def generate_video_v1(
    cfg: SyntheticConfig, height: int, width: int, split: str, index: int
) -> SyntheticVideo:
    """Render clip ``index`` of ``split`` (version 1); deterministic from
    ``(cfg.seed, split, index)``."""
    if cfg.style not in ("tabletop", "driving"):
        raise ValueError(f"data.synthetic.style: unknown style {cfg.style!r}")
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        raise ValueError(
            f"data.synthetic.min_objects/max_objects: need 1 <= min <= max, "
            f"got {cfg.min_objects}, {cfg.max_objects}"
        )
    rng = split_seed(cfg.seed, split, index)
    T = cfg.frames_per_video
    scale, camera_motion, cams, cw, ch = camera_and_canvas(rng, cfg, height, width)
    painter = _STYLES[cfg.style]
    background, horizon = painter.background(rng, ch, cw, scale, cams[0], height)
    n_obj = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects = [
        painter.make_object(rng, cfg, T, height, width, scale, cams, horizon) for _ in range(n_obj)
    ]
    if cfg.style == "driving":  # nearer (lower) objects in front
        objects.sort(key=lambda ob: ob.pos[0, 1] + ob.mask.shape[0])
    frames = np.empty((T, height, width, 3), np.uint8)
    gt = np.empty((T, height, width), np.int32)
    for t in range(T):
        canvas = background.copy()
        ids = np.zeros((ch, cw), np.int32)
        for k, ob in enumerate(objects, start=1):  # list order = depth order (last on top)
            paste_sprite(canvas, ids, ob, t, k)
        frames[t], gt[t] = camera_view(canvas, ids, cams[t], height, width, camera_motion)
    return finish_video(
        rng, frames, gt, objects, camera_motion, f"synthetic-{cfg.style}-{split}-{index:06d}"
    )


# ------------------------------------------------------------------------------------------
# camera and canvas
# ------------------------------------------------------------------------------------------


class _Tabletop:
    """Textured floor (noise + wood grain / tiles) with coloured blobs, boxes and polygons."""

    @staticmethod
    def background(rng, ch, cw, scale, cam0, H):
        base = hsv_colour(rng, (0.05, 0.35), (0.3, 0.65))
        second = np.clip(base + rng.uniform(-45, 45, 3), 0, 255).astype(np.float32)
        kind = rng.choice(["noise", "stripes", "checker"], p=[0.5, 0.25, 0.25])
        pat = texture_pattern(rng, ch, cw, scale * rng.uniform(1.5, 3.0), kind)
        if kind != "noise":
            pat = 0.5 * pat + 0.5 * (value_noise(rng, ch, cw, 6 * scale) * 0.5 + 0.5)
        img = base[None, None] * (1 - pat[..., None]) + second[None, None] * pat[..., None]
        img += BG_TEXTURE_AMP * value_noise(rng, ch, cw, 5.0 * scale, 3)[..., None]
        return np.clip(img, 0, 255).astype(np.uint8), None

    @staticmethod
    def make_object(rng, cfg, T, H, W, scale, cams, horizon):
        diag = np.sqrt(H * W)
        size = rng.uniform(cfg.min_size_frac, cfg.max_size_frac) * diag
        aspect = rng.uniform(0.55, 1.0)
        w, h = (size, size * aspect) if rng.random() < 0.5 else (size * aspect, size)
        w, h = max(3, int(round(w))), max(3, int(round(h)))
        kind = rng.choice(["ellipse", "rectangle", "polygon", "star"])
        mask = shape_mask(rng, kind, h, w)
        base = hsv_colour(rng, (0.55, 1.0), (0.55, 1.0))
        second = hsv_colour(rng, (0.4, 1.0), (0.35, 1.0)) if rng.random() < 0.5 else base * 0.55
        colour = shade(base, second, texture_pattern(rng, h, w, scale), 10.0, rng)
        view = frame0_view(cams, H, W)
        start = (
            rng.uniform(view[0] + 0.1 * view[2], view[0] + 0.9 * view[2]),
            rng.uniform(view[1] + 0.1 * view[3], view[1] + 0.9 * view[3]),
        )
        direction = random_direction(rng) if rng.random() < cfg.moving_share else None
        pos, moves = trajectory(rng, cfg, T, (w, h), start, view, scale, direction)
        return Sprite(mask, colour, pos, moves)


class _Driving:
    """Sky, buildings and a road with lane marks; cars drive along the road, signs stand still."""

    @staticmethod
    def background(rng, ch, cw, scale, cam0, H):
        horizon = int(cam0[1] - H / 2 + rng.uniform(0.3, 0.45) * H)
        horizon = int(np.clip(horizon, 1, ch - 2))
        img = np.empty((ch, cw, 3), np.float32)
        sky = hsv_colour(rng, (0.2, 0.5), (0.7, 0.95))
        ramp = np.linspace(0.85, 1.05, horizon, dtype=np.float32)[:, None, None]
        img[:horizon] = sky[None, None] * ramp
        # buildings: textured blocks of varied height along the horizon
        x = 0
        while x < cw:
            bw = int(rng.uniform(8, 25) * scale)
            bh = int(rng.uniform(0.3, 0.9) * horizon)
            col = hsv_colour(rng, (0.0, 0.3), (0.25, 0.7))
            img[horizon - bh : horizon, x : x + bw] = col
            # windows
            win = texture_pattern(rng, bh, min(bw, cw - x), scale * 0.8, "checker")
            img[horizon - bh : horizon, x : x + bw] -= 35.0 * win[..., None]
            x += bw
        ground = hsv_colour(rng, (0.0, 0.15), (0.3, 0.5))
        img[horizon:] = ground
        img[horizon:] += 18.0 * value_noise(rng, ch - horizon, cw, 1.5 * scale, 3)[..., None]
        # lane marks: dashed lines at a few depths
        for frac in (0.35, 0.7):
            y = horizon + int(frac * (ch - horizon))
            th = max(1, int(scale * (1 + 2 * frac)))
            dash = int(8 * scale)
            for xs in range(int(rng.uniform(0, dash)), cw, 2 * dash):
                img[y : y + th, xs : xs + dash] = 230.0
        img += 6.0 * value_noise(rng, ch, cw, 1.0, 1)[..., None]
        return np.clip(img, 0, 255).astype(np.uint8), horizon

    @staticmethod
    def make_object(rng, cfg, T, H, W, scale, cams, horizon):
        diag = np.sqrt(H * W)
        view = frame0_view(cams, H, W)
        moving = rng.random() < cfg.moving_share
        is_sign = (not moving) and rng.random() < 0.5
        size = rng.uniform(cfg.min_size_frac, cfg.max_size_frac) * diag
        if is_sign:
            w, h, kind = max(4, int(size * 0.45)), max(6, int(size)), "sign"
            base = hsv_colour(rng, (0.7, 1.0), (0.7, 1.0))
            colour = shade(base, base * 0.4, texture_pattern(rng, h, w, scale, "flat"), 6.0, rng)
        else:
            w, h, kind = max(6, int(size)), max(4, int(size * 0.55)), "car"
            base = hsv_colour(rng, (0.5, 1.0), (0.4, 1.0))
            glass = np.array([60.0, 70.0, 90.0], np.float32)
            pat = np.zeros((h, w), np.float32)
            pat[int(h * 0.1) : int(h * 0.4), int(w * 0.3) : int(w * 0.68)] = 1.0  # windows
            colour = shade(base, glass, pat, 8.0, rng)
        mask = shape_mask(rng, kind, h, w)
        # stand on the ground: bottom of the object below the horizon
        y_bottom = rng.uniform(max(horizon + 2, view[1]), view[1] + view[3])
        start = (rng.uniform(view[0] + 0.05 * view[2], view[0] + 0.95 * view[2]), y_bottom - h / 2)
        direction = None
        if moving:
            sgn = rng.choice([-1.0, 1.0])
            a = rng.uniform(-0.15, 0.15)
            direction = (sgn * np.cos(a), np.sin(a))
        pos, moves = trajectory(rng, cfg, T, (w, h), start, view, scale, direction)
        return Sprite(mask, colour, pos, moves)


_STYLES = {"tabletop": _Tabletop, "driving": _Driving}
