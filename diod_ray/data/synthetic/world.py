"""The world of a synthetic clip, shared by version 1 (``v1.py``) and version 2
(``v2.py``): the clip record, objects on a world canvas, camera paths, trajectories and
the crop / warp of the canvas into the frame. Moving code here must not change a single draw
(tests/data/test_synthetic.py pins version 1's output).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

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
    # version 3: the kind of each GT id (kinds[k - 1] is id k's); None for versions 1 and 2
    kinds: list[str] | None = None


@dataclass
class Sprite:
    mask: np.ndarray  # bool [h,w] sprite silhouette
    colour: np.ndarray  # uint8 [h,w,3] sprite texture
    pos: np.ndarray  # float [T,2] world (x, y) of the sprite's top-left corner per frame
    moves: np.ndarray  # bool [T-1] scene motion per interval t -> t+1


def split_seed(seed: int, split: str, index: int) -> np.random.Generator:
    """The clip's random generator: a pure function of (seed, split, index)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


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


def canvas_box(cams, H, W, pad) -> tuple[int, int, int, int]:
    """World box (x0, y0, width, height) covering every frame's view plus a margin."""
    half_w = W / 2 / cams[:, 2]
    half_h = H / 2 / cams[:, 2]
    x0 = int(np.floor((cams[:, 0] - half_w).min())) - pad
    x1 = int(np.ceil((cams[:, 0] + half_w).max())) + pad
    y0 = int(np.floor((cams[:, 1] - half_h).min())) - pad
    y1 = int(np.ceil((cams[:, 1] + half_h).max())) + pad
    return x0, y0, x1 - x0, y1 - y0


def camera_view(canvas, ids, cam, H, W, warp) -> tuple[np.ndarray, np.ndarray]:
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


def paste_sprite(canvas, ids, ob: Sprite, t: int, k: int) -> None:
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


def trajectory(rng, cfg, T, size_wh, start, view, scale, direction=None):
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


def random_direction(rng) -> tuple[float, float]:
    a = rng.uniform(0, 2 * np.pi)
    return float(np.cos(a)), float(np.sin(a))


def frame0_view(cams, H, W):
    cx, cy, z = cams[0]
    return cx - W / 2 / z, cy - H / 2 / z, W / z, H / z


# ------------------------------------------------------------------------------------------
# styles
# ------------------------------------------------------------------------------------------


def finish_video(
    rng: np.random.Generator,
    frames: np.ndarray,
    gt: np.ndarray,
    objects: list,
    camera_motion: bool,
    video_id: str,
) -> SyntheticVideo:
    """Sensor noise on the rendered float frames [T, H, W, 3] (uint8 out) and the per-frame
    moving flags [T, n_objects + 1] (object k's flag at frame t is whether it moves from t to
    t + 1; the last frame repeats the last step), shared by both benchmark versions."""
    T = frames.shape[0]
    noise = rng.normal(0.0, SENSOR_NOISE_STD, frames.shape).astype(np.float32)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    moving = np.zeros((T, len(objects) + 1), bool)
    for k, ob in enumerate(objects, start=1):
        if T > 1:
            moving[:-1, k] = ob.moves
            moving[-1, k] = ob.moves[-1]
    return SyntheticVideo(
        frames=frames, gt=gt, moving=moving, camera_motion=camera_motion, video_id=video_id
    )


def camera_and_canvas(rng: np.random.Generator, cfg, height: int, width: int):
    """The camera path and the canvas it looks at, shared by both benchmark versions (same draws,
    same order). Returns (scale, camera_motion, cams [T, 3]: cx, cy, zoom in canvas pixels,
    canvas width, canvas height)."""
    T = cfg.frames_per_video
    scale = float(np.sqrt(height * width / REFERENCE_AREA))
    camera_motion = bool(rng.random() < cfg.camera_motion_share) and T > 1
    cams = _camera_path(rng, cfg, T, height, width, scale, camera_motion)  # [T,3]: cx, cy, zoom
    x0, y0, cw, ch = canvas_box(cams, height, width, pad=int(np.ceil(4 * scale)) + 2)
    cams[:, 0] -= x0
    cams[:, 1] -= y0
    return scale, camera_motion, cams, cw, ch
