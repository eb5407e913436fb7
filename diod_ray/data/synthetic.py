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

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from diod_ray.config import SyntheticConfig
from diod_ray.data.synth_draw import (
    _hsv_colour,
    _pattern,
    _shade,
    _shape_mask,
    _value_noise,
)

REFERENCE_AREA = 64 * 128
# share of moving objects whose trajectory crosses the frame border (enter or leave)
BORDER_CROSSING_P = 0.35
# share of moving objects that start moving late or stop early within the clip
PARTIAL_MOTION_P = 0.15
SENSOR_NOISE_STD = 2.0
# amplitude (grey levels) of the background's multi-scale texture
BG_TEXTURE_AMP = 40.0
# zoom change per frame (relative) under a zooming camera
ZOOM_RATE = (0.01, 0.03)


@dataclass
class SyntheticVideo:
    frames: np.ndarray  # uint8 [T,H,W,3] RGB
    gt: np.ndarray  # int32 [T,H,W], 0 = background, ids 1..G consistent over time
    moving: np.ndarray  # bool [T,G+1], column 0 False
    camera_motion: bool
    video_id: str


@dataclass
class _Object:
    mask: np.ndarray  # bool [h,w] sprite silhouette
    colour: np.ndarray  # uint8 [h,w,3] sprite texture
    pos: np.ndarray  # float [T,2] world (x, y) of the sprite's top-left corner per frame
    moves: np.ndarray  # bool [T-1] scene motion per interval t -> t+1


def split_seed(seed: int, split: str, index: int) -> np.random.Generator:
    """The clip's random generator: a pure function of (seed, split, index)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def generate_video(
    cfg: SyntheticConfig, height: int, width: int, split: str, index: int
) -> SyntheticVideo:
    """Render clip ``index`` of ``split``; deterministic from ``(cfg.seed, split, index)``.

    ``cfg.version`` 2 renders the harder benchmark of :mod:`diod_ray.data.synthetic_v2`."""
    if cfg.version == 2:
        from diod_ray.data.synthetic_v2 import generate_video_v2

        return generate_video_v2(cfg, height, width, split, index)
    if cfg.version != 1:
        raise ValueError(f"data.synthetic.version: unknown version {cfg.version!r} (1 or 2)")
    if cfg.style not in ("tabletop", "driving"):
        raise ValueError(f"data.synthetic.style: unknown style {cfg.style!r}")
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        raise ValueError(
            f"data.synthetic.min_objects/max_objects: need 1 <= min <= max, "
            f"got {cfg.min_objects}, {cfg.max_objects}"
        )
    rng = split_seed(cfg.seed, split, index)
    T = cfg.frames_per_video
    scale = float(np.sqrt(height * width / REFERENCE_AREA))
    camera_motion = bool(rng.random() < cfg.camera_motion_share) and T > 1
    cams = _camera_path(rng, cfg, T, height, width, scale, camera_motion)  # [T,3]: cx, cy, zoom
    x0, y0, cw, ch = _canvas_box(cams, height, width, pad=int(np.ceil(4 * scale)) + 2)
    cams[:, 0] -= x0
    cams[:, 1] -= y0
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
            _paste(canvas, ids, ob, t, k)
        frames[t], gt[t] = _view(canvas, ids, cams[t], height, width, camera_motion)
    noise = rng.normal(0.0, SENSOR_NOISE_STD, frames.shape).astype(np.float32)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    moving = np.zeros((T, n_obj + 1), bool)
    for k, ob in enumerate(objects, start=1):
        if T > 1:
            moving[:-1, k] = ob.moves
            moving[-1, k] = ob.moves[-1]
    return SyntheticVideo(
        frames=frames,
        gt=gt,
        moving=moving,
        camera_motion=camera_motion,
        video_id=f"synthetic-{cfg.style}-{split}-{index:06d}",
    )


# ------------------------------------------------------------------------------------------
# camera and canvas
# ------------------------------------------------------------------------------------------


def _camera_path(rng, cfg, T, H, W, scale, moving) -> np.ndarray:
    """Per frame (cx, cy, zoom): the world point at the frame centre and the magnification."""
    cams = np.zeros((T, 3), np.float64)
    cams[:, 2] = 1.0
    if not moving:
        return cams
    kind = rng.choice(["pan", "zoom", "pan_zoom"], p=[0.5, 0.2, 0.3])
    t = np.arange(T)
    if kind in ("pan", "pan_zoom"):
        speed = rng.uniform(0.5, 1.0) * cfg.max_speed_px * scale
        angle = rng.uniform(0, 2 * np.pi)
        cams[:, 0] = speed * np.cos(angle) * t
        cams[:, 1] = speed * np.sin(angle) * t
    if kind in ("zoom", "pan_zoom"):
        rate = rng.uniform(*ZOOM_RATE) * rng.choice([-1.0, 1.0])
        cams[:, 2] = (1.0 + rate) ** t
    return cams


def _canvas_box(cams, H, W, pad) -> tuple[int, int, int, int]:
    """World box (x0, y0, width, height) covering every frame's view plus a margin."""
    half_w = W / 2 / cams[:, 2]
    half_h = H / 2 / cams[:, 2]
    x0 = int(np.floor((cams[:, 0] - half_w).min())) - pad
    x1 = int(np.ceil((cams[:, 0] + half_w).max())) + pad
    y0 = int(np.floor((cams[:, 1] - half_h).min())) - pad
    y1 = int(np.ceil((cams[:, 1] + half_h).max())) + pad
    return x0, y0, x1 - x0, y1 - y0


def _view(canvas, ids, cam, H, W, warp) -> tuple[np.ndarray, np.ndarray]:
    """World canvas -> frame: a crop for a static camera, an affine warp otherwise."""
    cx, cy, z = cam
    if not warp:
        x, y = int(round(cx - W / 2)), int(round(cy - H / 2))
        return canvas[y : y + H, x : x + W], ids[y : y + H, x : x + W]
    # image = z * (world - c) + (W/2, H/2)
    m = np.array([[z, 0, W / 2 - z * cx], [0, z, H / 2 - z * cy]], np.float64)
    img = cv2.warpAffine(canvas, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lab = cv2.warpAffine(ids, m, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return img, lab


def _paste(canvas, ids, ob: _Object, t: int, k: int) -> None:
    """Paste object ``k``'s sprite at its frame-t position, clipped to the canvas."""
    h, w = ob.mask.shape
    x, y = int(round(ob.pos[t, 0])), int(round(ob.pos[t, 1]))
    ys, ye = max(y, 0), min(y + h, canvas.shape[0])
    xs, xe = max(x, 0), min(x + w, canvas.shape[1])
    if ys >= ye or xs >= xe:
        return
    m = ob.mask[ys - y : ye - y, xs - x : xe - x]
    canvas[ys:ye, xs:xe][m] = ob.colour[ys - y : ye - y, xs - x : xe - x][m]
    ids[ys:ye, xs:xe][m] = k


# ------------------------------------------------------------------------------------------
# trajectories
# ------------------------------------------------------------------------------------------


def _trajectory(rng, cfg, T, size_wh, start, view, scale, direction=None):
    """Positions [T,2] (top-left, world) and per-interval motion [T-1] of one object.

    ``start`` is the object's centre at frame 0. Moving objects get a constant velocity; some
    cross the frame border (enter or leave), some start late / stop early.
    """
    w, h = size_wh
    moves = np.zeros(max(T - 1, 0), bool)
    pos = np.repeat(np.array([[start[0] - w / 2, start[1] - h / 2]], np.float64), T, 0)
    if direction is None:
        return pos, moves
    speed = rng.uniform(0.4, 1.0) * cfg.max_speed_px * scale
    vel = speed * np.array(direction, np.float64)
    moves[:] = True
    if T > 2 and rng.random() < PARTIAL_MOTION_P:
        cut = int(rng.integers(1, T - 1))
        if rng.random() < 0.5:
            moves[:cut] = False  # starts late
        else:
            moves[cut:] = False  # stops early
    steps = np.concatenate([[0.0], np.cumsum(moves)])  # [T] intervals moved so far
    pos = pos + steps[:, None] * vel[None, :]
    if rng.random() < BORDER_CROSSING_P and moves.any():
        # shift the trajectory along its main axis so that the object enters the frame-0 view
        # (centre outside the view at frame 0) or leaves it (outside at the last frame); the
        # depth d beyond the border makes some appear / vanish completely within the clip
        vx0, vy0, vw, vh = view
        axis = int(np.argmax(np.abs(vel)))
        ext = (w, h)[axis]
        lo, hi = (vx0, vx0 + vw) if axis == 0 else (vy0, vy0 + vh)
        travel = abs(steps[-1] * vel[axis])
        d = rng.uniform(-0.3 * ext, 0.5 * ext + 0.6 * travel)
        centre = pos[:, axis] + ext / 2
        forward = vel[axis] > 0
        if rng.random() < 0.5:  # enter: from the border behind the motion
            target = lo - d if forward else hi + d
            pos[:, axis] += target - centre[0]
        else:  # leave: through the border ahead
            target = hi + d if forward else lo - d
            pos[:, axis] += target - centre[-1]
    return pos, moves


def _random_direction(rng) -> tuple[float, float]:
    a = rng.uniform(0, 2 * np.pi)
    return float(np.cos(a)), float(np.sin(a))


def _frame0_view(cams, H, W):
    cx, cy, z = cams[0]
    return cx - W / 2 / z, cy - H / 2 / z, W / z, H / z


# ------------------------------------------------------------------------------------------
# styles
# ------------------------------------------------------------------------------------------


class _Tabletop:
    """Textured floor (noise + wood grain / tiles) with coloured blobs, boxes and polygons."""

    @staticmethod
    def background(rng, ch, cw, scale, cam0, H):
        base = _hsv_colour(rng, (0.05, 0.35), (0.3, 0.65))
        second = np.clip(base + rng.uniform(-45, 45, 3), 0, 255).astype(np.float32)
        kind = rng.choice(["noise", "stripes", "checker"], p=[0.5, 0.25, 0.25])
        pat = _pattern(rng, ch, cw, scale * rng.uniform(1.5, 3.0), kind)
        if kind != "noise":
            pat = 0.5 * pat + 0.5 * (_value_noise(rng, ch, cw, 6 * scale) * 0.5 + 0.5)
        img = base[None, None] * (1 - pat[..., None]) + second[None, None] * pat[..., None]
        img += BG_TEXTURE_AMP * _value_noise(rng, ch, cw, 5.0 * scale, 3)[..., None]
        return np.clip(img, 0, 255).astype(np.uint8), None

    @staticmethod
    def make_object(rng, cfg, T, H, W, scale, cams, horizon):
        diag = np.sqrt(H * W)
        size = rng.uniform(cfg.min_size_frac, cfg.max_size_frac) * diag
        aspect = rng.uniform(0.55, 1.0)
        w, h = (size, size * aspect) if rng.random() < 0.5 else (size * aspect, size)
        w, h = max(3, int(round(w))), max(3, int(round(h)))
        kind = rng.choice(["ellipse", "rectangle", "polygon", "star"])
        mask = _shape_mask(rng, kind, h, w)
        base = _hsv_colour(rng, (0.55, 1.0), (0.55, 1.0))
        second = _hsv_colour(rng, (0.4, 1.0), (0.35, 1.0)) if rng.random() < 0.5 else base * 0.55
        colour = _shade(base, second, _pattern(rng, h, w, scale), 10.0, rng)
        view = _frame0_view(cams, H, W)
        start = (
            rng.uniform(view[0] + 0.1 * view[2], view[0] + 0.9 * view[2]),
            rng.uniform(view[1] + 0.1 * view[3], view[1] + 0.9 * view[3]),
        )
        direction = _random_direction(rng) if rng.random() < cfg.moving_share else None
        pos, moves = _trajectory(rng, cfg, T, (w, h), start, view, scale, direction)
        return _Object(mask, colour, pos, moves)


class _Driving:
    """Sky, buildings and a road with lane marks; cars drive along the road, signs stand still."""

    @staticmethod
    def background(rng, ch, cw, scale, cam0, H):
        horizon = int(cam0[1] - H / 2 + rng.uniform(0.3, 0.45) * H)
        horizon = int(np.clip(horizon, 1, ch - 2))
        img = np.empty((ch, cw, 3), np.float32)
        sky = _hsv_colour(rng, (0.2, 0.5), (0.7, 0.95))
        ramp = np.linspace(0.85, 1.05, horizon, dtype=np.float32)[:, None, None]
        img[:horizon] = sky[None, None] * ramp
        # buildings: textured blocks of varied height along the horizon
        x = 0
        while x < cw:
            bw = int(rng.uniform(8, 25) * scale)
            bh = int(rng.uniform(0.3, 0.9) * horizon)
            col = _hsv_colour(rng, (0.0, 0.3), (0.25, 0.7))
            img[horizon - bh : horizon, x : x + bw] = col
            # windows
            win = _pattern(rng, bh, min(bw, cw - x), scale * 0.8, "checker")
            img[horizon - bh : horizon, x : x + bw] -= 35.0 * win[..., None]
            x += bw
        ground = _hsv_colour(rng, (0.0, 0.15), (0.3, 0.5))
        img[horizon:] = ground
        img[horizon:] += 18.0 * _value_noise(rng, ch - horizon, cw, 1.5 * scale, 3)[..., None]
        # lane marks: dashed lines at a few depths
        for frac in (0.35, 0.7):
            y = horizon + int(frac * (ch - horizon))
            th = max(1, int(scale * (1 + 2 * frac)))
            dash = int(8 * scale)
            for xs in range(int(rng.uniform(0, dash)), cw, 2 * dash):
                img[y : y + th, xs : xs + dash] = 230.0
        img += 6.0 * _value_noise(rng, ch, cw, 1.0, 1)[..., None]
        return np.clip(img, 0, 255).astype(np.uint8), horizon

    @staticmethod
    def make_object(rng, cfg, T, H, W, scale, cams, horizon):
        diag = np.sqrt(H * W)
        view = _frame0_view(cams, H, W)
        moving = rng.random() < cfg.moving_share
        is_sign = (not moving) and rng.random() < 0.5
        size = rng.uniform(cfg.min_size_frac, cfg.max_size_frac) * diag
        if is_sign:
            w, h, kind = max(4, int(size * 0.45)), max(6, int(size)), "sign"
            base = _hsv_colour(rng, (0.7, 1.0), (0.7, 1.0))
            colour = _shade(base, base * 0.4, _pattern(rng, h, w, scale, "flat"), 6.0, rng)
        else:
            w, h, kind = max(6, int(size)), max(4, int(size * 0.55)), "car"
            base = _hsv_colour(rng, (0.5, 1.0), (0.4, 1.0))
            glass = np.array([60.0, 70.0, 90.0], np.float32)
            pat = np.zeros((h, w), np.float32)
            pat[int(h * 0.1) : int(h * 0.4), int(w * 0.3) : int(w * 0.68)] = 1.0  # windows
            colour = _shade(base, glass, pat, 8.0, rng)
        mask = _shape_mask(rng, kind, h, w)
        # stand on the ground: bottom of the object below the horizon
        y_bottom = rng.uniform(max(horizon + 2, view[1]), view[1] + view[3])
        start = (rng.uniform(view[0] + 0.05 * view[2], view[0] + 0.95 * view[2]), y_bottom - h / 2)
        direction = None
        if moving:
            sgn = rng.choice([-1.0, 1.0])
            a = rng.uniform(-0.15, 0.15)
            direction = (sgn * np.cos(a), np.sin(a))
        pos, moves = _trajectory(rng, cfg, T, (w, h), start, view, scale, direction)
        return _Object(mask, colour, pos, moves)


_STYLES = {"tabletop": _Tabletop, "driving": _Driving}
