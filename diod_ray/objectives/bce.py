"""Weighted binary cross-entropy of matched (slot, object) pairs and its normalisation."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def object_size_weight(targets: Tensor, mode: str = "reference") -> Tensor:
    """Positive-term weight per object: 2 - |o| / (h w) ("reference", BMOD) or 1 ("none").

    ``targets`` [..., O, P] -> [..., O].
    """
    if mode == "reference":
        return 2.0 - targets.float().mean(dim=-1)
    if mode == "none":
        return torch.ones(targets.shape[:-1], device=targets.device)
    raise ValueError(f"objectives.size_weight: {mode!r} is not one of 'reference', 'none'")


def weighted_bce(probs: Tensor, targets: Tensor, pos_weight: Tensor) -> Tensor:
    """Per-object pixel-mean weighted BCE (reference ``computeWBCE``).

    ``probs`` [N, O, P] matched slot probabilities in (0, 1) (squashed ``scale * attn + eps``),
    ``targets`` [N, O, P] binary, ``pos_weight`` [N, O]. Returns [N, O]:
    mean_p [ -w y log p - (1 - y) log(1 - p) ]. Only the positive term is weighted.
    """
    p = probs.float()
    y = targets.float()
    pos = (y * torch.log(p)).mean(dim=-1)  # [N, O]
    neg = ((1.0 - y) * torch.log(1.0 - p)).mean(dim=-1)  # [N, O] (log1p is slower on CPU)
    return -(pos_weight.float() * pos) - neg


def normalise_objects(
    per_obj: Tensor, valid: Tensor, mode: Literal["paper", "reference"] = "paper"
) -> Tensor:
    """Reduce per-object losses [B, T, O] to a scalar; invalid objects contribute nothing.

    "paper": mean over the valid objects of a frame, then mean over the frames that have objects
    (0 when none has). "reference": mean over the valid objects of a frame, summed over frames and
    clips, divided by the batch size B (frames without objects add 0 but count).
    """
    if per_obj.shape != valid.shape or per_obj.dim() != 3:
        raise ValueError(
            f"normalise_objects: per_obj and valid must both be [B,T,O], got "
            f"{tuple(per_obj.shape)} and {tuple(valid.shape)}"
        )
    v = valid.to(per_obj.dtype)
    # where() rather than multiply: a non-finite value on a padded object must not leak in
    summed = torch.where(valid, per_obj, torch.zeros_like(per_obj)).sum(dim=-1)  # [B, T]
    count = v.sum(dim=-1)  # [B, T]
    frame_mean = summed / count.clamp(min=1.0)  # [B, T]
    if mode == "paper":
        has = (count > 0).to(per_obj.dtype)
        return (frame_mean * has).sum() / has.sum().clamp(min=1.0)
    if mode == "reference":
        return frame_mean.sum() / per_obj.shape[0]
    raise ValueError(f"objectives.normalisation: {mode!r} is not one of 'paper', 'reference'")
