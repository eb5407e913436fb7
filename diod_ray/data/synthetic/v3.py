"""Synthetic benchmark version 3: DIOD's premise holds and is measured (docs/data.md).

DIOD learns objectness from motion masks on moving objects and, by self-distillation, transfers
it to static objects of the same kinds. That needs static objects to look like moving ones and
unlike the background. Version 2 draws objects and background from one texture family, so a
pixel classifier separates them at chance level and the premise fails. Version 3 keeps the
renderer (world canvas, camera pan / zoom crop or warp, depth order, moving flags = scene
motion) and draws (the kinds and textures in :mod:`diod_ray.data.synthetic.v3_kinds`, the scene
here):

- **Object kinds** (``KINDS``), each with its own shape family and its own texture family of
  fine two-colour patterns: ``car`` (rounded boxes, plaid grid), ``person`` (tall capsules /
  ellipses, polka dots), ``sign`` (diamonds, triangles, octagons, concentric rings). Kind, shape,
  size and texture are drawn before and independently of whether an object moves.
- **Background** from a different texture family: a Voronoi mosaic of cells filled with smooth
  two-colour camouflage blobs. Every texture (object or background) takes its two colours from
  one colour distribution (``colour_pair``), so colour alone does not separate them; texture
  structure does. ``bg_object_texture_share`` paints about that share of the background area
  with object-kind textures, in object-sized patches, so the premise's strength is a variable.
- **Large objects, all in view**: object areas are drawn so that the median is well above 20
  cells of the stride-4 grid at 64x128, and each object's whole trajectory stays inside every
  frame's view, with little overlap between objects (no slivers at the border or behind others).
- **Motion-mask noise of driving video** from the real flow pipeline (``motion.py``; nothing here
  paints a mask): a near layer of poles with parallax under camera motion and swaying,
  flickering background regions (spurious segments, GT background), slow movers below the flow
  threshold (missed) and convoys of touching movers with one velocity (merged). Static objects
  do not move relative to the background, so the masks never hold them.

Everything is a pure function of ``(cfg.seed, split, index)``; the camera and sensor noise, the
background, the knob's patches, the objects and the background clutter draw from separate
streams, so the knob changes the background only (same objects, same GT; knob 0 draws nothing).
Lengths are given for a 64 x 128 frame and scaled with ``sqrt(H * W / (64 * 128))``.
"""

from __future__ import annotations

import numpy as np

from diod_ray.config import SyntheticConfig
from diod_ray.data.synthetic.clutter import ClutterSpec, apply_sways, near_poles, sway_regions
from diod_ray.data.synthetic.v3_kinds import (
    Spec,
    background_texture,
    mosaic,
    paint_object_patches,
)
from diod_ray.data.synthetic.world import (
    PARTIAL_MOTION_P,
    Sprite,
    SyntheticVideo,
    camera_and_canvas,
    camera_view,
    finish_video,
    paste_sprite,
    random_direction,
    split_seed,
)

# object placement: tries per object, largest overlap of two objects' swept boxes (share of the
# smaller box), margin (px) inside every frame's view
PLACE_TRIES = 40
MAX_OVERLAP = 0.1
VIEW_MARGIN = 1.0
# share of the movers that move slower than the flow can see (px/frame at 64x128)
SLOW_P = 0.15
SLOW_SPEED = (0.15, 0.55)
# share of the movers that get a touching companion with the same velocity (merged masks)
CONVOY_P = 0.25
# companion's centre distance from the leader's, as a share of their summed half extents
CONVOY_GAP = 0.9
# near-layer poles: clips with poles, poles per clip, width (share of W), image-speed factor
POLE_P = 0.3
POLES = (1, 1)
POLE_WIDTH = (0.04, 0.08)
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


# ------------------------------------------------------------------------------------------
# motion and placement
# ------------------------------------------------------------------------------------------


def _inner_view(cams, H, W) -> tuple[float, float, float, float]:
    """World box (x0, y0, x1, y1) seen in every frame, less VIEW_MARGIN."""
    half_w, half_h = W / 2 / cams[:, 2], H / 2 / cams[:, 2]
    return (
        float((cams[:, 0] - half_w).max()) + VIEW_MARGIN,
        float((cams[:, 1] - half_h).max()) + VIEW_MARGIN,
        float((cams[:, 0] + half_w).min()) - VIEW_MARGIN,
        float((cams[:, 1] + half_h).min()) - VIEW_MARGIN,
    )


def _motion(rng, cfg, T: int, scale: float, slow: bool) -> tuple[np.ndarray, np.ndarray]:
    """A mover's velocity [2] (px/frame, world) and per-interval motion bool [T-1]: constant
    velocity, some start late or stop early."""
    direction = np.array(random_direction(rng))
    if slow:
        speed = rng.uniform(*SLOW_SPEED) * scale
    else:
        speed = rng.uniform(0.4, 1.0) * cfg.max_speed_px * scale
    moves = np.ones(max(T - 1, 0), bool)
    if T > 2 and rng.random() < PARTIAL_MOTION_P:
        cut = int(rng.integers(1, T - 1))
        if rng.random() < 0.5:
            moves[:cut] = False  # starts late
        else:
            moves[cut:] = False  # stops early
    return speed * direction, moves


def _offsets(vel: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """Displacement from frame 0, float [T,2]."""
    steps = np.concatenate([[0.0], np.cumsum(moves)])
    return steps[:, None] * vel[None, :]


def _fit_travel(vel, moves, size, inner) -> np.ndarray:
    """Slow ``vel`` down where the sprite and its travel would not fit in the inner view."""
    off = _offsets(vel, moves)
    travel = off.max(0) - off.min(0)
    slack = np.array([inner[2] - inner[0] - size[0], inner[3] - inner[1] - size[1]])
    factor = 1.0
    for a in range(2):
        if travel[a] > slack[a]:
            factor = min(factor, max(slack[a], 0.0) / travel[a])
    return vel * factor


def _swept_box(tl, off, size) -> np.ndarray:
    """(x0, y0, x1, y1) covered by the sprite box over the clip."""
    lo, hi = off.min(0), off.max(0)
    return np.array([tl[0] + lo[0], tl[1] + lo[1], tl[0] + size[0] + hi[0],
                     tl[1] + size[1] + hi[1]])  # fmt: skip


def _overlap(a, boxes) -> float:
    """Largest overlap of box ``a`` with any of ``boxes``, as a share of the smaller box."""
    worst = 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    for b in boxes:
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw > 0 and ih > 0:
            small = min(area_a, (b[2] - b[0]) * (b[3] - b[1]))
            worst = max(worst, iw * ih / max(small, 1e-6))
    return worst


def _place(rng, size, off, inner, boxes, force: bool):
    """Top-left (x, y) at frame 0 whose swept box lies in ``inner`` and overlaps the placed
    ``boxes`` by at most MAX_OVERLAP; the least overlapping try when ``force``, else None."""
    lo = (inner[0] - off[:, 0].min(), inner[1] - off[:, 1].min())
    hi = (inner[2] - size[0] - off[:, 0].max(), inner[3] - size[1] - off[:, 1].max())
    best, best_ov = None, np.inf
    for _ in range(PLACE_TRIES):
        tl = tuple(
            rng.uniform(lo[a], hi[a]) if hi[a] > lo[a] else (lo[a] + hi[a]) / 2 for a in range(2)
        )
        ov = _overlap(_swept_box(tl, off, size), boxes)
        if ov <= MAX_OVERLAP:
            return tl
        if ov < best_ov:
            best, best_ov = tl, ov
    return best if force else None


def _sprite(spec: Spec, tl, off, moves) -> Sprite:
    pos = np.asarray(tl, np.float64)[None, :] + off
    return Sprite(spec.mask, spec.texture, pos, moves.copy())


def objects(rng, cfg, T: int, H: int, W: int, scale: float, cams) -> tuple[list, list[str]]:
    """The clip's objects in depth order (last on top) and their kinds.

    Appearances first (kind, shape, size, texture), then which of them move (``moving_share``;
    the first ``min_objects`` hold at least one static and one moving object), then motion and
    placement. A mover may get a convoy companion (an extra object, up to ``max_objects``)."""
    if not 1 <= cfg.min_objects <= cfg.max_objects:
        raise ValueError(
            f"data.synthetic.min_objects/max_objects: need 1 <= min <= max, "
            f"got {cfg.min_objects}, {cfg.max_objects}"
        )
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    specs = [Spec(rng, scale) for _ in range(n)]
    moving = rng.random(n) < cfg.moving_share
    m = min(n, cfg.min_objects)
    if m >= 2 and (moving[:m].all() or not moving[:m].any()):
        k = int(rng.integers(m))
        moving[k] = not moving[k]
    inner = _inner_view(cams, H, W)
    placed: list[tuple[Sprite, str]] = []
    boxes: list[np.ndarray] = []
    still = np.zeros(max(T - 1, 0), bool)
    for i, spec in enumerate(specs):
        size = (spec.w, spec.h)
        if moving[i]:
            vel, moves = _motion(rng, cfg, T, scale, slow=rng.random() < SLOW_P)
            vel = _fit_travel(vel, moves, size, inner)
        else:
            vel, moves = np.zeros(2), still
        off = _offsets(vel, moves)
        tl = _place(rng, size, off, inner, boxes, force=i < cfg.min_objects)
        if tl is None:
            continue
        placed.append((_sprite(spec, tl, off, moves), spec.kind))
        boxes.append(_swept_box(tl, off, size))
        if moving[i] and len(specs) + len(placed) - i - 1 < cfg.max_objects:
            if rng.random() < CONVOY_P:
                mate = _convoy_mate(rng, scale, spec, tl, vel, moves, off, inner, boxes)
                if mate is not None:
                    placed.append(mate[:2])
                    boxes.append(mate[2])
    order = rng.permutation(len(placed))  # depth order independent of motion and kind
    return [placed[i][0] for i in order], [placed[i][1] for i in order]


def _convoy_mate(rng, scale, lead: Spec, tl, vel, moves, off, inner, boxes):
    """A companion beside the leader (perpendicular to its motion, overlapping it a little),
    same velocity: flow sees one moving blob, GT two objects. (Sprite, kind, swept box) or
    None when it does not fit."""
    spec = Spec(rng, scale)
    speed = float(np.hypot(*vel))
    if speed == 0:
        return None
    px, py = -vel[1] / speed, vel[0] / speed  # unit vector perpendicular to the motion
    ext_lead = abs(px) * lead.w + abs(py) * lead.h
    ext_mate = abs(px) * spec.w + abs(py) * spec.h
    gap = 0.5 * (ext_lead + ext_mate) * CONVOY_GAP
    centre = (tl[0] + lead.w / 2, tl[1] + lead.h / 2)
    others = boxes[:-1]  # the leader's own box is the last one
    for sgn in (1.0, -1.0) if rng.random() < 0.5 else (-1.0, 1.0):
        c = (centre[0] + sgn * px * gap, centre[1] + sgn * py * gap)
        mtl = (c[0] - spec.w / 2, c[1] - spec.h / 2)
        box = _swept_box(mtl, off, (spec.w, spec.h))
        inside = box[0] >= inner[0] and box[1] >= inner[1] and box[2] <= inner[2]
        if inside and box[3] <= inner[3] and _overlap(box, others) <= MAX_OVERLAP:
            return _sprite(spec, mtl, off, moves), spec.kind, box
    return None


# ------------------------------------------------------------------------------------------
# the clip (background clutter: diod_ray/data/synthetic/clutter.py)
# ------------------------------------------------------------------------------------------


def generate_video_v3(
    cfg: SyntheticConfig, height: int, width: int, split: str, index: int
) -> SyntheticVideo:
    """Render clip ``index`` of ``split`` (version 3); deterministic from (seed, split, index).
    The returned video's ``kinds`` names each GT id's kind."""
    share = float(cfg.bg_object_texture_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"data.synthetic.bg_object_texture_share: need 0..1, got {share}")
    rng = split_seed(cfg.seed, f"v3/{split}", index)  # camera, then sensor noise
    T = cfg.frames_per_video
    scale, camera_motion, cams, cw, ch = camera_and_canvas(rng, cfg, height, width)
    background = mosaic(split_seed(cfg.seed, f"v3/{split}/background", index), ch, cw, scale)
    paint_object_patches(split_seed(cfg.seed, f"v3/{split}/knob", index), background, share, scale)
    obs, kinds = objects(split_seed(cfg.seed, f"v3/{split}/objects", index), cfg, T, height,
                         width, scale, cams)  # fmt: skip
    clutter = split_seed(cfg.seed, f"v3/{split}/clutter", index)
    inner = _inner_view(cams, height, width)
    sways = sway_regions(clutter, CLUTTER, ch, cw, scale, inner, height, width, background_texture)
    poles = near_poles(clutter, CLUTTER, cams, height, width, scale, background_texture)
    frames = np.empty((T, height, width, 3), np.uint8)
    gt = np.empty((T, height, width), np.int32)
    for t in range(T):
        canvas = background.copy()
        apply_sways(canvas, sways, t, CLUTTER)
        ids = np.zeros((ch, cw), np.int32)
        for k, ob in enumerate(obs, start=1):  # list order = depth order (last on top)
            paste_sprite(canvas, ids, ob, t, k)
        frames[t], gt[t] = camera_view(canvas, ids, cams[t], height, width, camera_motion)
        if poles is not None:  # the poles' layer hides the far background, never an object
            img, alpha, near = poles
            p_img, p_alpha = camera_view(img, alpha, near[t], height, width, camera_motion)
            cover = (p_alpha > 0) & (gt[t] == 0)
            frames[t][cover] = p_img[cover]
            gt[t][cover] = 0
    video = finish_video(rng, frames, gt, obs, camera_motion, f"synthetic-v3-{split}-{index:06d}")
    video.kinds = kinds
    return video
