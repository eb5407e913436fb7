"""Object-discovery metrics: fg-ARI, all-ARI, F1@50, static / moving recall, mBO.

Everything is computed from contingency tables (pixel counts per (GT id, predicted id) pair) built
with ONE ``torch.bincount`` per batch, on the input's device:

- per frame ``[B,T,U,P]`` -> F1@50, recall of static / moving GT objects, best overlap;
- per clip ``[B,U,P]`` (sum over frames) -> ARI over all T*h*w pixels of the clip pooled together,
  so predicted ids must be consistent over time.

Label maps: in ``gt`` 0 is the background and 1.. are object ids; in ``pred`` 0 is the model's
background slot and 1.. the other slots. ARI is invariant to relabelling, F1 is not affected by ids.

This module holds the per-batch arithmetic and the one-clip functions; the streaming,
rank-mergeable dataset accumulator built on it is :mod:`diod_ray.metrics.accumulator`.

Two named protocols (docs/metrics.md):

- ``reference``: the reference's evalPD_ARI.py rules, so numbers compare with the paper: a clip is
  skipped when its max GT id is <= 1 (one_hot without num_classes), the Kipf/MONet formula with
  +1e-12 in the denominator, the "both single cluster -> 1" special case evaluated on all rows,
  clips whose fg-ARI is NaN (<= 1 foreground pixel) dropped from both means.
- ``clean``: standard ARI (identical to scikit-learn's ``adjusted_rand_score``); all-ARI over every
  clip; fg-ARI over clips with at least 2 GT objects (with 0 or 1 object it measures nothing and
  is reported as counts instead); no rule that depends on the numeric value of GT ids.

F1@50 (both protocols): every non-background predicted id present in a frame is a prediction, every
GT id present in the frame a GT object; a true positive is a same-frame pair with IoU > 0.5
(strict); F1 = 2 TP / (N_pred + N_gt), micro-averaged over all frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PROTOCOLS = ("reference", "clean")
# the reference adds this to the ARI denominator (utils.adjusted_rand_index)
REFERENCE_ARI_EPS = 1e-12
# the reference evaluates TRI-PD in non-overlapping clips of this many frames
REFERENCE_CLIP_LEN = 5
# GT ids below this index the table rows directly; below _LUT_IDS they are compacted through a
# look-up table (TRI-PD's ids are global per video); beyond, torch.unique sorts them
_SMALL_IDS = 64
_LUT_IDS = 1 << 22


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metrics protocol {protocol!r}; choose one of {PROTOCOLS}")
    return protocol


def _as_long(x, name: str) -> torch.Tensor:
    """numpy array or tensor of integer labels -> int64 tensor (same device for tensors)."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
            raise TypeError(f"{name}: expected integer labels, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"{name}: expected integer labels, got dtype {x.dtype}")
    return x.long()


def downsample_nearest(ids: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest downsampling of integer label maps [..., H, W] -> [..., h, w] (torch's 'nearest' rule:
    source index floor(i * H / h)); exact for any id range, no float round trip."""
    ids = _as_long(ids, "ids")
    H, W = ids.shape[-2:]
    h, w = hw
    if (H, W) == (h, w):
        return ids
    rows = torch.div(torch.arange(h, device=ids.device) * H, h, rounding_mode="floor")
    cols = torch.div(torch.arange(w, device=ids.device) * W, w, rounding_mode="floor")
    return ids.index_select(-2, rows).index_select(-1, cols)


def slot_labels(attn: torch.Tensor, bg_index: int) -> torch.Tensor:
    """Hard slot ids from soft attention [B,T,K,h,w] -> int64 [B,T,h,w]: argmax over the slots,
    the background slot -> 0, slot k -> k + 1 (ids stay consistent over frames and clips)."""
    idx = attn.argmax(2)  # [B,T,h,w]
    return torch.where(idx == bg_index, torch.zeros_like(idx), idx + 1)


# --------------------------------------------------------------------------------------------
# Contingency tables
# --------------------------------------------------------------------------------------------


@dataclass
class Tables:
    """Per-frame contingency tables of a batch and the raw GT id of each row."""

    frame: torch.Tensor  # int64 [B,T,U,P]: pixels with GT row u and predicted id p
    gt_ids: torch.Tensor  # int64 [U]: raw GT id of row u (0 = background)

    @property
    def clip(self) -> torch.Tensor:
        return self.frame.sum(1)  # [B,U,P]

    @property
    def fg_rows(self) -> torch.Tensor:
        return self.gt_ids > 0  # bool [U]


def contingency_tables(gt: torch.Tensor, pred: torch.Tensor) -> Tables:
    """Pixel counts per (frame, GT id, predicted id) with a single bincount.

    gt, pred: int [B,T,H,W] on the same device. Large GT ids (e.g. TRI-PD's global ids) are
    compacted to the ids present in the batch, so the table stays [B,T,U,P] with U small."""
    if gt.shape != pred.shape or gt.dim() != 4:
        raise ValueError(
            f"gt and pred must both be [B,T,H,W] label maps of the same shape, got gt "
            f"{tuple(gt.shape)} and pred {tuple(pred.shape)} (downsample GT to the prediction grid "
            f"first, e.g. with diod_ray.metrics.downsample_nearest)"
        )
    B, T = gt.shape[:2]
    if gt.numel() == 0:
        raise ValueError(f"empty label maps of shape {tuple(gt.shape)}")
    gmin, gmax = (int(v) for v in torch.aminmax(gt))
    pmin, pmax = (int(v) for v in torch.aminmax(pred))
    if pmin < 0 or gmin < 0:
        raise ValueError(f"labels must be >= 0 (got min gt {gmin}, min pred {pmin})")
    P = pmax + 1
    if gmax < _SMALL_IDS:  # raw ids index the rows directly
        gt_ids = torch.arange(gmax + 1, device=gt.device)
        rows = gt
    elif gmax < _LUT_IDS:  # compact through a presence look-up table: O(pixels), no sort
        present = torch.bincount(gt.reshape(-1), minlength=gmax + 1) > 0
        gt_ids = present.nonzero().squeeze(1)  # sorted: id 0 (if present) stays row 0
        lut = torch.cumsum(present, 0) - 1
        rows = lut[gt]
    else:
        gt_ids, rows = torch.unique(gt, return_inverse=True)  # sorted
    U = gt_ids.numel()
    offset = torch.arange(B * T, device=gt.device).view(B, T, 1, 1) * (U * P)
    flat = rows * P  # [B,T,H,W] index into [B*T, U, P]
    flat += pred
    flat += offset
    counts = torch.bincount(flat.view(-1), minlength=B * T * U * P)
    return Tables(frame=counts.view(B, T, U, P), gt_ids=gt_ids)


# --------------------------------------------------------------------------------------------
# ARI from clip tables (batched)
# --------------------------------------------------------------------------------------------


@dataclass
class AriTerms:
    """Both ARI variants of each clip of a batch, float64 [B]."""

    standard: torch.Tensor  # scikit-learn's adjusted_rand_score (1 when the partitions coincide)
    reference: torch.Tensor  # the reference formula: +1e-12, NaN with <= 1 point, no override yet
    n_points: torch.Tensor


def _pair_counts(table: torch.Tensor) -> AriTerms:
    """ARI of each clip from its contingency table [B,U,P] via pair counts.

    tp = pairs together in both, fn = together in GT only, fp = together in the prediction only,
    tn = apart in both. Standard ARI = 2 (tp tn - fn fp) / ((tp+fn)(fn+tn) + (tp+fp)(fp+tn)); the
    reference's (R - E) / (M - E + eps) in n(n-1) units equals 2 (tp tn - fn fp) / (den + eps * pairs).
    Pair counts are integers < 2^53, exact in float64; degenerate cases give exact zeros."""
    t = table.to(torch.float64)

    def comb2(x: torch.Tensor) -> torch.Tensor:
        return x * (x - 1) / 2

    n = t.sum((1, 2))
    tp = comb2(t).sum((1, 2))
    same_gt = comb2(t.sum(2)).sum(1)
    same_pred = comb2(t.sum(1)).sum(1)
    pairs = comb2(n)
    fn = same_gt - tp
    fp = same_pred - tp
    tn = pairs - tp - fn - fp
    num = 2 * (tp * tn - fn * fp)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    identical = (fn == 0) & (fp == 0)
    standard = torch.where(identical, torch.ones_like(num), num / torch.where(identical, 1.0, den))
    reference = num / (den + REFERENCE_ARI_EPS * pairs)  # 0/0 = NaN when n <= 1
    return AriTerms(standard=standard, reference=reference, n_points=n)


@dataclass
class ClipAri:
    """Per-clip ARI values and the facts the protocols' inclusion rules need; [B] tensors."""

    all_standard: torch.Tensor
    fg_standard: torch.Tensor  # NaN when the clip has no foreground pixel
    all_reference: torch.Tensor  # with the reference's single-cluster override
    fg_reference: torch.Tensor  # NaN where the reference gets NaN (<= 1 fg pixel)
    max_gt_id: torch.Tensor  # int64
    n_fg_objects: torch.Tensor  # int64: distinct GT ids > 0 present in the clip


def clip_ari(tables: Tables) -> ClipAri:
    clip = tables.clip  # [B,U,P]
    fg_rows = tables.fg_rows
    fg_clip = clip * fg_rows.view(1, -1, 1)
    all_terms = _pair_counts(clip)
    fg_terms = _pair_counts(fg_clip)

    gt_area = clip.sum(2)  # [B,U]
    gt_present = gt_area > 0
    pred_distinct = (clip.sum(1) > 0).sum(1)  # [B]
    gt_distinct = gt_present.sum(1)
    max_gt_id = (gt_present * tables.gt_ids.view(1, -1)).amax(1)
    n_fg_objects = (gt_present & fg_rows.view(1, -1)).sum(1)

    # reference "both single cluster -> 1": argmax of the one-hot rows over ALL pixels is constant.
    # all-ARI: one GT id and one predicted id in the whole clip.
    all_single = (gt_distinct == 1) & (pred_distinct == 1)
    # fg-ARI (background column dropped): background rows argmax to column 0 = GT id 1, so the GT side
    # is "single" when every pixel has the same id, or background exists and all fg pixels are id 1.
    bg_pixels = (gt_area * (tables.gt_ids == 0).view(1, -1)).sum(1)
    id1_pixels = (gt_area * (tables.gt_ids == 1).view(1, -1)).sum(1)
    fg_pixels = fg_terms.n_points
    fg_true_single = (gt_distinct == 1) | ((bg_pixels > 0) & (id1_pixels == fg_pixels))
    fg_single = fg_true_single & (pred_distinct == 1)

    one = torch.ones_like(all_terms.reference)
    nan = torch.full_like(fg_terms.standard, math.nan)
    return ClipAri(
        all_standard=all_terms.standard,
        fg_standard=torch.where(fg_pixels > 0, fg_terms.standard, nan),
        all_reference=torch.where(all_single, one, all_terms.reference),
        fg_reference=torch.where(fg_single, one, fg_terms.reference),
        max_gt_id=max_gt_id,
        n_fg_objects=n_fg_objects,
    )


# --------------------------------------------------------------------------------------------
# Per-frame object matching (batched): F1@50, recall, best overlap
# --------------------------------------------------------------------------------------------


@dataclass
class FrameMatch:
    present: torch.Tensor  # bool [B,T,U]: GT object (id > 0) present in the frame
    recalled: torch.Tensor  # bool [B,T,U]: some prediction has IoU > 0.5 with it
    best_iou: torch.Tensor  # float64 [B,T,U]: best IoU over non-background predictions
    tp: int
    n_pred: int
    n_gt: int


def frame_match(tables: Tables) -> FrameMatch:
    f = tables.frame  # [B,T,U,P]
    gt_area = f.sum(3)  # [B,T,U]
    pred_area = f.sum(2)  # [B,T,P]
    objects = f[..., 1:]  # background slot (id 0) is not a prediction   [B,T,U,P-1]
    union = gt_area.unsqueeze(-1) + pred_area[..., 1:].unsqueeze(-2) - objects
    # IoU > 0.5  <=>  2 * intersection > union (exact on integers)
    hit = (2 * objects > union) & tables.fg_rows.view(1, 1, -1, 1)
    present = (gt_area > 0) & tables.fg_rows.view(1, 1, -1)
    if objects.shape[-1]:
        best = (objects.double() / union.clamp(min=1).double()).amax(-1)
    else:
        best = torch.zeros(gt_area.shape, dtype=torch.float64, device=f.device)
    return FrameMatch(
        present=present,
        recalled=hit.any(-1) if objects.shape[-1] else torch.zeros_like(present),
        best_iou=best * present,
        tp=int(hit.sum()),
        n_pred=int((pred_area[..., 1:] > 0).sum()),
        n_gt=int(present.sum()),
    )


def _moving_per_row(tables: Tables, gt_moving: torch.Tensor) -> torch.Tensor:
    """gt_moving [B,T,G+1] bool indexed by raw GT id -> [B,T,U] bool per table row."""
    gt_moving = torch.as_tensor(gt_moving, device=tables.frame.device).bool()
    B, T, U, _ = tables.frame.shape
    if gt_moving.dim() != 3 or tuple(gt_moving.shape[:2]) != (B, T):
        raise ValueError(
            f"gt_moving must be [B,T,G+1] = [{B},{T},G+1], got {tuple(gt_moving.shape)}"
        )
    cols = gt_moving.shape[2]
    ids = tables.gt_ids
    present_any = tables.frame.sum((0, 1, 3)) > 0  # [U]
    too_big = present_any & (ids >= cols)
    if bool(too_big.any()):
        bad = int(ids[too_big].max())
        raise ValueError(f"gt_moving has {cols} id columns but the GT contains id {bad}")
    return gt_moving.index_select(2, ids.clamp(max=cols - 1))


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------


def _nan_div(a: float, b: float) -> float:
    return a / b if b else math.nan


def _one_clip(gt, pred) -> Tables:
    gt = _as_long(gt, "gt")
    pred = _as_long(pred, "pred").to(gt.device)
    if gt.dim() == 2:  # a single frame
        gt, pred = gt[None], pred[None]
    if gt.dim() != 3 or gt.shape != pred.shape:
        raise ValueError(
            f"expected one clip [T,H,W] for gt and pred, got {tuple(gt.shape)} and {tuple(pred.shape)}"
        )
    return contingency_tables(gt[None], pred[None])


@torch.inference_mode()
def fg_ari(gt, pred, protocol: str = "clean") -> float:
    """Adjusted Rand index over the GT-foreground pixels of one clip [T,H,W] (all frames pooled).

    ``clean``: scikit-learn's value on those pixels; NaN when the clip has no foreground pixel.
    ``reference``: the reference formula (+1e-12, single-cluster override on all rows; NaN with
    <= 1 foreground pixel). The protocols' clip-inclusion rules live in MetricAccumulator."""
    ari = clip_ari(_one_clip(gt, pred))
    v = ari.fg_reference if _check_protocol(protocol) == "reference" else ari.fg_standard
    return float(v[0])


@torch.inference_mode()
def all_ari(gt, pred, protocol: str = "clean") -> float:
    """Adjusted Rand index over all pixels of one clip [T,H,W], background included."""
    ari = clip_ari(_one_clip(gt, pred))
    v = ari.all_reference if _check_protocol(protocol) == "reference" else ari.all_standard
    return float(v[0])


@torch.inference_mode()
def f1_at_50(gt, pred) -> dict:
    """F1@50 of one clip [T,H,W]: per-frame matching at IoU > 0.5, counts summed over frames."""
    m = frame_match(_one_clip(gt, pred))
    return {
        "f1": _nan_div(2 * m.tp, m.n_pred + m.n_gt),
        "precision": _nan_div(m.tp, m.n_pred),
        "recall": _nan_div(m.tp, m.n_gt),
        "tp": m.tp,
        "n_pred": m.n_pred,
        "n_gt": m.n_gt,
    }
