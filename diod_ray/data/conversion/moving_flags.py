"""Moving flags derived from GT masks and optical flow, for converted splits that have GT but no
flags (issue 13 item 8; docs/data.md, "Derived moving flags").

An object moves in frame t when its GT mask moves against the camera-compensated background:
dense flow t -> t+1 (the last frame: t -> t-1) as in :mod:`diod_ray.data.motion`, the camera's
motion fitted as an affine model on the flow of GT *background* pixels only (RANSAC, the same
fit as the motion masks; objects cannot pull it), and the object's residual flow - the median
over its GT pixels, eroded by one pixel so that flow bleeding over its border does not count -
compared with a threshold in px/frame. The flags use GT, so they never feed training; they only
split recall into static and moving objects at evaluation.
"""

from __future__ import annotations

import cv2
import numpy as np

from diod_ray.config import FlowConfig
from diod_ray.data import motion

# residual flow (px/frame at the stored resolution) above which an object counts as moving;
# chosen on the synthetic v2 val split (docs/data.md; 0.3-0.8 px all give precision 0.99,
# recall 0.81-0.86), below the motion masks' 0.8 px because
# the median over a known object mask is far less noisy than a per-pixel threshold
MOVING_THRESHOLD_PX = 0.3
# objects with fewer GT pixels (after erosion) in a frame keep the flag of a neighbouring frame
MIN_PIXELS = 4


def derive_moving(
    frames: np.ndarray, gt: np.ndarray, cfg: FlowConfig, threshold_px: float = MOVING_THRESHOLD_PX
) -> np.ndarray:
    """moving bool [T, G+1] (column 0 False) from frames uint8 [T,H,W,3] and GT ids int [T,H,W].

    T = 1 (single images) gives all False: nothing can be said without a second frame.
    """
    T, H, W = gt.shape
    G = int(gt.max()) if gt.size else 0
    moving = np.zeros((T, G + 1), bool)
    if T < 2 or G == 0:
        return moving
    return _flags_from_residual(residual_magnitude(frames, gt, cfg), gt, threshold_px)


def _flags_from_residual(residual: np.ndarray, gt: np.ndarray, threshold_px: float) -> np.ndarray:
    """moving bool [T, G+1] from residual flow magnitude [T,H,W] and GT ids [T,H,W]."""
    T = gt.shape[0]
    G = int(gt.max())
    moving = np.zeros((T, G + 1), bool)
    known = np.zeros((T, G + 1), bool)
    kernel = np.ones((3, 3), np.uint8)
    for t in range(T):
        for k in np.unique(gt[t]):
            if k == 0:
                continue
            m = gt[t] == k
            inner = cv2.erode(m.astype(np.uint8), kernel).astype(bool)
            if inner.sum() >= MIN_PIXELS:
                m = inner
            elif m.sum() < MIN_PIXELS:
                continue
            moving[t, k] = float(np.median(residual[t][m])) > threshold_px
            known[t, k] = True
    # objects too small in a frame take the flag of the nearest frame where they were measured
    for k in range(1, G + 1):
        seen = np.nonzero(known[:, k])[0]
        if len(seen):
            for t in np.nonzero(~known[:, k])[0]:
                moving[t, k] = moving[seen[np.abs(seen - t).argmin()], k]
    return moving


def residual_magnitude(frames: np.ndarray, gt: np.ndarray, cfg: FlowConfig) -> np.ndarray:
    """Per frame the magnitude of the flow minus the camera's, float32 [T,H,W] px/frame.

    The camera model is fitted on GT background pixels (``gt == 0``); with large camera motion
    frame t+1 is stabilised with it and the flow recomputed, as in ``motion._residual_flow``."""
    T, H, W, _ = frames.shape
    up = int(min(motion.MAX_UPSAMPLE, max(1, np.ceil(motion.FLOW_MIN_SIDE / min(H, W)))))
    gray = [motion._prepare(f, up) for f in frames]
    estimator = motion._flow_estimator(cfg)
    out = np.zeros((T, H, W), np.float32)
    for t in range(T):
        nxt = t + 1 if t < T - 1 else t - 1
        bg = gt[t] == 0
        if up > 1:
            bg = cv2.resize(bg.astype(np.uint8), None, fx=up, fy=up,
                            interpolation=cv2.INTER_NEAREST).astype(bool)  # fmt: skip
        flow = estimator(gray[t], gray[nxt])  # [H*up, W*up, 2]
        res, valid = motion.camera_residual(flow, gray[t], gray[nxt], estimator, bg)
        mag = np.sqrt((res * res).sum(-1)) / up
        if valid is not None:
            mag[~valid] = 0.0
        if up > 1:
            mag = cv2.resize(mag, (W, H), interpolation=cv2.INTER_AREA)
        out[t] = mag
    return out


def flag_agreement(derived: np.ndarray, truth: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Counts [tp, fp, fn, tn] of derived vs true moving flags over the (frame, object) pairs
    where the object is visible (at least ``MIN_PIXELS`` GT pixels)."""
    counts = np.zeros(4, np.int64)
    if derived.shape[1] < truth.shape[1]:  # ids never visible have no derived column
        derived = np.pad(derived, ((0, 0), (0, truth.shape[1] - derived.shape[1])))
    for t in range(gt.shape[0]):
        area = np.bincount(gt[t].ravel(), minlength=truth.shape[1])[1:]
        vis = area >= MIN_PIXELS
        d, y = derived[t, 1:][vis], truth[t, 1:][vis]
        counts += [(d & y).sum(), (d & ~y).sum(), (~d & y).sum(), (~d & ~y).sum()]
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m diod_ray.data.conversion.moving_flags``: precision / recall of derived moving
    flags on generated synthetic clips, where the true flags are known; prints one JSON object."""
    import argparse
    import json

    from diod_ray.config import add_config_args, config_from_args
    from diod_ray.data.synthetic.render import generate_video

    ap = argparse.ArgumentParser(
        prog="python -m diod_ray.data.conversion.moving_flags", description=main.__doc__
    )
    add_config_args(ap)
    ap.add_argument("--split", default="val")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--threshold", type=float, nargs="+", default=[MOVING_THRESHOLD_PX])
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    d = cfg.data
    counts = {th: np.zeros(4, np.int64) for th in args.threshold}
    for i in range(args.clips):
        v = generate_video(d.synthetic, d.height, d.width, args.split, i)
        residual = residual_magnitude(v.frames, v.gt, d.flow)
        for th in args.threshold:
            derived = _flags_from_residual(residual, v.gt, th)
            counts[th] += flag_agreement(derived, v.moving, v.gt)
    rows = []
    for th, (tp, fp, fn, tn) in counts.items():
        rows.append({
            "threshold_px": th,
            "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4),
            "accuracy": round((tp + tn) / max(tp + fp + fn + tn, 1), 4),
            "pairs": int(tp + fp + fn + tn),
            "moving_pairs": int(tp + fn),
        })  # fmt: skip
    print(json.dumps({"split": args.split, "clips": args.clips,
                      "version": d.synthetic.version, "results": rows}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
