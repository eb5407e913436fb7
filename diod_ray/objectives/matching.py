"""Hungarian matching of target masks to slots on the BCE log-likelihood cost, batched.

The reference builds one [45 x n_obj] cost matrix per (clip, frame) in a Python loop with numpy
on the CPU. Here the cost of the whole batch is two batched products on the model's device
(docs/reference-notes.md §3 "Hungarian matching"); only the small [S, n_valid] matrices go
to ``scipy.optimize.linear_sum_assignment``, and padded / empty objects take no part (the
reference lets empty GT columns compete for slots).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def likelihood_scores(probs: Tensor, targets: Tensor) -> Tensor:
    """BCE log-likelihood of slot s explaining object o, for every frame at once.

    ``probs`` [N, S, P] in (0, 1) (already squashed as ``scale * attn + eps``), ``targets``
    [N, O, P] binary. Returns float32 [N, S, O] with
    score[n, s, o] = sum_p y_o log p_s + (1 - y_o) log(1 - p_s).
    """
    with torch.no_grad(), torch.autocast(probs.device.type, enabled=False):
        p = probs.detach().float()
        y = targets.detach().float()
        log_p = torch.log(p)  # [N, S, P]
        log_q = torch.log(1.0 - p)  # [N, S, P] (p <= scale + eps < 1; log1p is slower on CPU)
        yt = y.transpose(1, 2)  # [N, P, O]
        # two batched matmuls [N,S,P] @ [N,P,O] -> [N,S,O];
        # sum_p (1 - y) log q = sum_p log q - sum_p y log q
        pos = torch.bmm(log_p, yt)
        neg = log_q.sum(dim=-1, keepdim=True) - torch.bmm(log_q, yt)
        return pos + neg


def assign(scores: np.ndarray, valid: np.ndarray, exclude_slot: int | None = None) -> np.ndarray:
    """Maximise the total score per frame. ``scores`` [N, S, O], ``valid`` bool [N, O].

    Returns int64 [N, O]: matched slot per valid object, -1 for invalid objects (and for valid
    objects left over when a frame has more objects than slots). ``exclude_slot`` never matches.
    """
    N, S, n_obj = scores.shape
    slots = np.arange(S)
    if exclude_slot is not None:
        slots = np.delete(slots, exclude_slot % S)
        scores = scores[:, slots]  # [N, S-1, O]
    out = np.full((N, n_obj), -1, dtype=np.int64)
    for n in np.flatnonzero(valid.any(axis=1)):  # frames with at least one object
        cols = np.flatnonzero(valid[n])
        rows, picked = linear_sum_assignment(scores[n][:, cols], maximize=True)
        out[n, cols[picked]] = slots[rows]
    return out


def match_slots(
    probs: Tensor, targets: Tensor, valid: Tensor, *, exclude_slot: int | None = None
) -> Tensor:
    """Hungarian matching of targets to slots (docs/reference-notes.md §3).

    ``probs`` [N, S, P] squashed attention of the S candidate slots, ``targets`` [N, O, P]
    binary masks, ``valid`` bool [N, O]. Either the caller removes the background slot from
    ``probs`` or names it in ``exclude_slot`` (cheaper: no copy of the attention; the returned
    indices then count all S slots). Gradients never flow (the cost uses detached student
    masks). Returns long [N, O] on ``probs.device``: the index among the S given slots matched to
    each object, -1 where the object is invalid.
    """
    if probs.dim() != 3 or targets.dim() != 3:
        raise ValueError(
            f"match_slots: probs [N,S,P] and targets [N,O,P] expected, got "
            f"{tuple(probs.shape)} and {tuple(targets.shape)}"
        )
    if probs.shape[0] != targets.shape[0] or probs.shape[2] != targets.shape[2]:
        raise ValueError(
            f"match_slots: N and P must agree, got probs {tuple(probs.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    if tuple(valid.shape) != tuple(targets.shape[:2]):
        raise ValueError(
            f"match_slots: valid must be [N,O]={tuple(targets.shape[:2])}, got {tuple(valid.shape)}"
        )
    if targets.shape[1] == 0:
        return torch.full(valid.shape, -1, dtype=torch.long, device=probs.device)
    scores = likelihood_scores(probs, targets)  # [N, S, O] on device
    # the only host transfer: the small cost tensor and the valid flags
    valid_np = valid.detach().cpu().numpy().astype(bool)
    matched = assign(scores.cpu().numpy(), valid_np, exclude_slot)
    return torch.from_numpy(matched).to(probs.device)
