"""Streaming dataset metrics over batches of clips, mergeable over DDP ranks and Ray tasks: sums of
the counters of :mod:`diod_ray.metrics.contingency` (docs/metrics.md)."""

from __future__ import annotations

import torch

from diod_ray.metrics.contingency import (
    _as_long,
    _check_protocol,
    _moving_per_row,
    clip_ari,
    contingency_tables,
    frame_match,
)

# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------

_STATE_KEYS = (
    "clips",
    "frames",
    "fg_ari_sum",
    "fg_ari_clips",
    "all_ari_sum",
    "all_ari_clips",
    "tp",
    "n_pred",
    "n_gt",
    "static_hit",
    "static_gt",
    "moving_hit",
    "moving_gt",
    "best_overlap_sum",
    "clips_no_object",
    "clips_one_object",
    "ari_skipped_max_id",
    "ari_dropped_nan",
)


def _ratio(a: float, b: float) -> float | None:
    """A dataset metric, or None (JSON null) when it cannot be computed (empty denominator)."""
    return a / b if b else None


class MetricAccumulator:
    """Streaming dataset metrics; memory independent of the dataset size (a few counters).

    ``update(gt [B,T,h,w], pred [B,T,h,w], gt_moving [B,T,G+1] | None, moving_known [B] | None)``
    per batch of clips (each clip is one ARI unit; only clips whose moving flags are known count
    into static / moving recall), ``summary()`` at the end (None where a metric cannot be
    computed), ``merge(other)`` / ``state_dict()`` /
    ``to_tensor()`` + ``from_tensor()`` to combine DDP ranks or Ray tasks (sum of the counters)."""

    def __init__(self, protocol: str = "clean"):
        self.protocol = _check_protocol(protocol)
        self._s = dict.fromkeys(_STATE_KEYS, 0.0)
        self._motion_known = False

    # -- accumulation ------------------------------------------------------------------------
    @torch.inference_mode()
    def update(self, gt, pred, gt_moving=None, moving_known=None) -> None:
        gt = _as_long(gt, "gt")
        pred = _as_long(pred, "pred").to(gt.device)
        tables = contingency_tables(gt, pred)
        B, T = gt.shape[:2]
        s = self._s
        s["clips"] += B
        s["frames"] += B * T

        ari = clip_ari(tables)
        n_obj = ari.n_fg_objects
        s["clips_no_object"] += int((n_obj == 0).sum())
        s["clips_one_object"] += int((n_obj == 1).sum())
        if self.protocol == "reference":
            keep = ari.max_gt_id > 1  # one_hot without num_classes gives <= 2 columns otherwise
            s["ari_skipped_max_id"] += int((~keep).sum())
            nan_fg = keep & torch.isnan(ari.fg_reference)
            s["ari_dropped_nan"] += int(nan_fg.sum())
            keep = keep & ~nan_fg
            fg_keep, all_keep = keep, keep
            fg_vals, all_vals = ari.fg_reference, ari.all_reference
        else:
            fg_keep = n_obj >= 2
            all_keep = torch.ones_like(fg_keep)
            fg_vals, all_vals = ari.fg_standard, ari.all_standard
        s["fg_ari_sum"] += float(fg_vals[fg_keep].sum())
        s["fg_ari_clips"] += int(fg_keep.sum())
        s["all_ari_sum"] += float(all_vals[all_keep].sum())
        s["all_ari_clips"] += int(all_keep.sum())

        m = frame_match(tables)
        s["tp"] += m.tp
        s["n_pred"] += m.n_pred
        s["n_gt"] += m.n_gt
        s["best_overlap_sum"] += float(m.best_iou.sum())
        known = None
        if gt_moving is not None and moving_known is not None:
            known = torch.as_tensor(moving_known, device=m.present.device).bool().view(B, 1, 1)
        if gt_moving is not None and (known is None or bool(known.any())):
            self._motion_known = True
            present = m.present if known is None else m.present & known  # [B,T,U]
            moving = _moving_per_row(tables, gt_moving) & present
            static = present & ~moving
            s["moving_gt"] += int(moving.sum())
            s["moving_hit"] += int((moving & m.recalled).sum())
            s["static_gt"] += int(static.sum())
            s["static_hit"] += int((static & m.recalled).sum())

    # -- combination -------------------------------------------------------------------------
    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        if other.protocol != self.protocol:
            raise ValueError(f"cannot merge protocol {other.protocol!r} into {self.protocol!r}")
        for k in _STATE_KEYS:
            self._s[k] += other._s[k]
        self._motion_known = self._motion_known or other._motion_known
        return self

    def state_dict(self) -> dict:
        return {"protocol": self.protocol, "motion_known": self._motion_known, **self._s}

    @classmethod
    def from_state_dict(cls, state: dict) -> MetricAccumulator:
        acc = cls(state["protocol"])
        acc._motion_known = bool(state.get("motion_known", False))
        for k in _STATE_KEYS:
            acc._s[k] = float(state[k])
        return acc

    def to_tensor(self, device="cpu") -> torch.Tensor:
        """Counters as float64 [len(keys)+1] (last = motion known) for ``dist.all_reduce(SUM)``."""
        vals = [self._s[k] for k in _STATE_KEYS] + [float(self._motion_known)]
        return torch.tensor(vals, dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, protocol: str, t: torch.Tensor) -> MetricAccumulator:
        acc = cls(protocol)
        vals = t.detach().cpu().tolist()
        for k, v in zip(_STATE_KEYS, vals):
            acc._s[k] = float(v)
        acc._motion_known = vals[len(_STATE_KEYS)] > 0
        return acc

    def all_reduce(self, device="cpu") -> MetricAccumulator:
        """The sum over the ranks of a DDP job (a copy of this one when not distributed). Every
        rank must call it the same number of times (each evaluation pass of the training loop)."""
        import torch.distributed as dist

        t = self.to_tensor(device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return MetricAccumulator.from_tensor(self.protocol, t)

    # -- result ------------------------------------------------------------------------------
    def summary(self) -> dict:
        s = self._s
        tp, n_pred, n_gt = s["tp"], s["n_pred"], s["n_gt"]
        out = {
            "fg_ari": _ratio(s["fg_ari_sum"], s["fg_ari_clips"]),
            "all_ari": _ratio(s["all_ari_sum"], s["all_ari_clips"]),
            "f1": _ratio(2 * tp, n_pred + n_gt),
            "precision": _ratio(tp, n_pred),
            "recall": _ratio(tp, n_gt),
            # None without moving flags: never all of recall reported as static recall
            "static_recall": _ratio(s["static_hit"], s["static_gt"])
            if self._motion_known
            else None,
            "moving_recall": _ratio(s["moving_hit"], s["moving_gt"])
            if self._motion_known
            else None,
            "mbo": _ratio(s["best_overlap_sum"], n_gt),
            "clips": int(s["clips"]),
            "frames": int(s["frames"]),
            "protocol": self.protocol,
            "tp": int(tp),
            "n_pred": int(n_pred),
            "n_gt": int(n_gt),
            "n_static_gt": int(s["static_gt"]),
            "n_moving_gt": int(s["moving_gt"]),
            "fg_ari_clips": int(s["fg_ari_clips"]),
            "all_ari_clips": int(s["all_ari_clips"]),
            "clips_no_object": int(s["clips_no_object"]),
            "clips_one_object": int(s["clips_one_object"]),
        }
        if self.protocol == "reference":
            out["ari_skipped_max_id"] = int(s["ari_skipped_max_id"])
            out["ari_dropped_nan"] = int(s["ari_dropped_nan"])
        return out
