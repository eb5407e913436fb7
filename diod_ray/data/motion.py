"""Noisy motion masks from real optical flow (OpenCV), the way a real pipeline makes them.

Per frame t: dense flow t -> t+1 (the last frame uses t -> t-1), the dominant (camera) motion
fitted robustly as an affine model (RANSAC on a grid of flow vectors) and subtracted, the
residual magnitude thresholded, cleaned with morphology, split into connected components, and
small components dropped. Nothing here looks at ground truth: static objects are missed,
neighbouring movers merge, parallax / flow errors give spurious segments, borders are ragged.
"""

from __future__ import annotations

import cv2
import numpy as np

from diod_ray.config import FlowConfig

# small frames are upsampled (x2, x3 or x4) before flow until the shorter side reaches this:
# DIS / Farneback need a few pyramid levels and patches of several px to see 1-3 px motions
# of 10-20 px objects (64x128: x2 raises moving recall from 0.44 to 0.70, docs/perf/data-gen.md)
FLOW_MIN_SIDE = 128
MAX_UPSAMPLE = 4
# smallest grid step (px, at flow resolution) of the vectors the camera model is fitted on
CAMERA_GRID_STEP = 4
CAMERA_RANSAC_PX = 1.0
# camera motions above this (px at flow resolution, anywhere in the frame) are stabilised first
STABILISE_ABOVE_PX = 0.3
DIS_PATCH_SIZE = 4
DIS_PATCH_STRIDE = 2
# Gaussian window; larger windows smear object motion into the background
FARNEBACK_WINSIZE = 7


def motion_masks(frames: np.ndarray, cfg: FlowConfig, min_pixels: int = 0) -> np.ndarray:
    """Instance ids per frame from optical flow, int32 [T,H,W] (0 = static / background).

    frames: uint8 [T,H,W,3] RGB. Segments with fewer than ``max(min_pixels,
    cfg.min_segment_frac * H * W)`` pixels are dropped; ids are 1..n per frame (not linked over
    time).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"motion_masks: expected uint8 [T,H,W,3] frames, got {frames.dtype} {frames.shape}"
        )
    T, H, W, _ = frames.shape
    out = np.zeros((T, H, W), np.int32)
    if T < 2:
        return out
    up = int(min(MAX_UPSAMPLE, max(1, np.ceil(FLOW_MIN_SIDE / min(H, W)))))
    gray = [_prepare(f, up) for f in frames]
    estimator = _flow_estimator(cfg)
    min_area = max(int(min_pixels), int(np.ceil(cfg.min_segment_frac * H * W)))
    for t in range(T):
        nxt = t + 1 if t < T - 1 else t - 1
        flow = estimator(gray[t], gray[nxt])  # [H*up, W*up, 2] px at flow resolution
        valid = None
        if cfg.camera_model == "affine":
            flow, valid = camera_residual(flow, gray[t], gray[nxt], estimator)
        mag = np.sqrt((flow * flow).sum(-1)) / up  # px at the frame's resolution
        if valid is not None:
            mag[~valid] = 0.0  # no data where the stabilised frame has no pixels
        if up > 1:
            mag = cv2.resize(mag, (W, H), interpolation=cv2.INTER_AREA)
        out[t] = _segments(mag > cfg.threshold_px, cfg.morph_kernel, min_area)
    return out


def _prepare(frame: np.ndarray, up: int) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if up > 1:
        g = cv2.resize(g, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
    return g


def _flow_estimator(cfg: FlowConfig):
    """A function (gray0, gray1) -> float32 flow [H,W,2] for ``cfg.method``."""
    if cfg.method == "farneback":

        def farneback(a, b):
            return cv2.calcOpticalFlowFarneback(
                a, b, None, pyr_scale=0.5, levels=3, winsize=FARNEBACK_WINSIZE, iterations=3,
                poly_n=5, poly_sigma=1.1, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
            )  # fmt: skip

        return farneback
    if cfg.method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        # small dense patches: objects are 10-60 px at flow resolution (measured: moving recall
        # 0.70 vs 0.62 with the preset's 8 px patches, docs/perf/data-gen.md)
        dis.setPatchSize(DIS_PATCH_SIZE)
        dis.setPatchStride(DIS_PATCH_STRIDE)
        # fewer iterations than the preset: same quality on these clips, ~25% faster
        dis.setGradientDescentIterations(12)
        dis.setVariationalRefinementIterations(3)

        def dis_flow(a, b):
            return dis.calc(a, b, None)

        return dis_flow
    raise ValueError(f"data.flow.method: unknown method {cfg.method!r} (farneback or dis)")


def camera_residual(flow, g0, g1, estimator, fit_mask=None):
    """Flow minus the camera's: ([H,W,2] residual, bool [H,W] valid or None).

    The dominant motion is fitted as an affine model on ``flow`` (on the pixels of ``fit_mask``
    only, when given: e.g. the GT background in ``moving_flags``). When it is more than a small
    shift, frame 1 is warped onto frame 0 with it (stabilisation) and the flow recomputed on the
    stabilised pair: dense estimators underestimate large global motions, and the second pass
    only has the objects' own motion left to find.
    """
    model = _camera_model(flow, fit_mask)
    cam = _affine_flow(model, flow.shape[0], flow.shape[1])
    if np.abs(cam).max() < STABILISE_ABOVE_PX:
        return flow - cam, None
    H, W = g0.shape
    stab = cv2.warpAffine(g1, model, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    inside = cv2.warpAffine(np.ones_like(g1), model, (W, H),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)  # fmt: skip
    valid = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
    residual = estimator(g0, stab)
    # second, smaller correction: what the first fit missed
    fit = valid if fit_mask is None else valid & fit_mask
    residual = residual - _affine_flow(_camera_model(residual, fit), H, W)
    return residual, valid


def _camera_model(flow: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The dominant motion as a 2x3 affine map (frame 0 -> frame 1), RANSAC on a flow grid."""
    H, W, _ = flow.shape
    s = max(CAMERA_GRID_STEP, min(H, W) // 32)  # about 32 x 64 vectors at most sizes
    ys, xs = np.mgrid[s // 2 : H : s, s // 2 : W : s]
    ys, xs = ys.ravel(), xs.ravel()
    if valid is not None:
        keep = valid[ys, xs]
        ys, xs = ys[keep], xs[keep]
    src = np.stack([xs, ys], 1).astype(np.float32)
    if len(src) < 6:
        return np.array([[1, 0, 0], [0, 1, 0]], np.float64)
    dst = src + flow[ys, xs]
    model, _ = cv2.estimateAffine2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=CAMERA_RANSAC_PX,
        maxIters=2000, confidence=0.995, refineIters=10,
    )  # fmt: skip
    if model is None:  # degenerate: fall back to the median translation
        med = np.median(flow[ys, xs], 0)
        return np.array([[1, 0, med[0]], [0, 1, med[1]]], np.float64)
    return model


def _affine_flow(model: np.ndarray, H: int, W: int) -> np.ndarray:
    """The flow field [H,W,2] of a 2x3 affine map."""
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    a = model.astype(np.float32)
    u = a[0, 0] * gx + a[0, 1] * gy + a[0, 2] - gx
    v = a[1, 0] * gx + a[1, 1] * gy + a[1, 2] - gy
    return np.stack([u, v], -1)


def _segments(binary: np.ndarray, kernel: int, min_area: int) -> np.ndarray:
    """Morphological clean-up, connected components, small ones dropped; int32 [H,W] ids."""
    m = binary.astype(np.uint8)
    if kernel > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= max(min_area, 1)
    keep[0] = False
    remap = np.zeros(n, np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[labels]
