"""Burn-in objective (paper §3.2): matched motion-mask BCE + L_fg/bg (eq. 1) + reconstruction."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from diod_ray.objectives.bce import normalise_objects, object_size_weight, weighted_bce
from diod_ray.objectives.masks import channels_to_masks, object_channels
from diod_ray.objectives.matching import match_slots
from diod_ray.objectives.result import LossResult

if TYPE_CHECKING:
    from diod_ray.config import ObjectivesConfig
    from diod_ray.model.diod import ModelOutput


def squash(p: Tensor, scale: float, eps: float) -> Tensor:
    """``scale * p + eps``: keeps log(p) and log(1 - p) finite (reference: 0.999, 1e-8)."""
    return p.float() * scale + eps


class FgBgLoss(NamedTuple):
    """Eq. (1) split into its two logged parts; ``total = w_nll * nll + alpha * reg``."""

    total: Tensor
    nll: Tensor  # mean over pixels of -m_fg log W_fg
    reg: Tensor  # mean over pixels of W_fg (the WHOLE map, DIOD's change from BMOD)


def fg_bg_loss(
    fg: Tensor,
    m_fg: Tensor,
    alpha: float,
    *,
    w_nll: float = 1.0,
    prob_scale: float = 0.999,
    prob_eps: float = 1e-8,
) -> FgBgLoss:
    """Eq. (1): L_fg/bg = 1/N sum_i [ -m_fg(i) log W_fg(i) + alpha W_fg(i) ].

    ``fg`` W_fg [..., h, w] in [0, 1], ``m_fg`` the union of the (binary) motion masks, same
    shape. The regulariser alpha * W_fg covers the whole map, including regions inside the motion
    masks (paper §3.2; BMOD regularised non-object regions only). W_fg is squashed as
    ``prob_scale * W_fg + prob_eps`` in both terms, like the reference.
    """
    if fg.shape != m_fg.shape:
        raise ValueError(
            f"fg_bg_loss: fg {tuple(fg.shape)} and m_fg {tuple(m_fg.shape)} differ in shape"
        )
    w = squash(fg, prob_scale, prob_eps)
    nll = -(m_fg.float() * torch.log(w)).mean()
    reg = w.mean()
    return FgBgLoss(total=w_nll * nll + alpha * reg, nll=nll, reg=reg)


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between the decoded and the input (strong-view, normalised) frames."""
    if recon.shape != target.shape:
        raise ValueError(
            f"reconstruction_loss: recon {tuple(recon.shape)} and target {tuple(target.shape)} "
            "differ in shape"
        )
    return F.mse_loss(recon.float(), target.float())


def foreground_slots(num_slots: int, bg_index: int, device: torch.device) -> Tensor:
    """Indices of the K-1 non-background slots, in order (long [K-1])."""
    keep = torch.ones(num_slots, dtype=torch.bool, device=device)
    keep[bg_index] = False
    return keep.nonzero().squeeze(1)


def matched_mask_loss(
    attn: Tensor,
    masks: Tensor,
    valid: Tensor,
    bg_index: int,
    *,
    size_weight: str,
    normalisation: str,
    prob_scale: float,
    prob_eps: float,
) -> tuple[Tensor, dict[str, float]]:
    """Matched weighted BCE between motion masks and non-background slots (burn-in).

    ``attn`` [B, T, K, h, w] (softmax over slots), ``masks`` [B, T, O, h, w] and ``valid``
    [B, T, O] (valid objects first, as :func:`ids_to_masks` gives them). Returns the normalised
    scalar loss and matching statistics.
    """
    B, T, K, h, w = attn.shape
    N, P = B * T, h * w
    n_valid = valid.sum(dim=-1)  # [B, T]
    o_eff = max(int(n_valid.max()) if n_valid.numel() else 0, 1)  # valid objects are a prefix
    masks = masks[:, :, :o_eff].reshape(N, o_eff, P)  # [N, O', P]
    valid = valid[:, :, :o_eff].reshape(N, o_eff)  # [N, O']
    flat = attn.reshape(N, K, P)  # [N, K, P]
    with torch.no_grad():  # the cost uses detached student masks
        probs = squash(flat.detach(), prob_scale, prob_eps)  # [N, K, P]
        # index among all K slots, never the background one; -1 = no slot
        match = match_slots(probs, masks, valid, exclude_slot=bg_index)  # [N, O']
    del probs
    used = match >= 0  # [N, O']
    # gather the matched slot map of every object once, then squash only those: [N, O', P]
    gather_idx = match.clamp(min=0).unsqueeze(-1).expand(N, o_eff, P)
    matched = squash(flat.gather(1, gather_idx), prob_scale, prob_eps)
    per_obj = weighted_bce(matched, masks, object_size_weight(masks, size_weight))  # [N, O']
    loss = normalise_objects(per_obj.reshape(B, T, o_eff), used.reshape(B, T, o_eff), normalisation)
    stats = {
        "objects_per_frame": float(n_valid.float().mean()) if n_valid.numel() else 0.0,
        "objects_matched": float(used.sum()),
        "objects_unmatched": float((valid & ~used).sum()),
        "frames_with_objects": float((n_valid > 0).sum()),
    }
    return loss, stats


def burn_in_loss(
    out: ModelOutput,
    motion_ids: Tensor,
    target: Tensor,
    oc: ObjectivesConfig,
    bg_index: int,
    *,
    max_objects: int,
) -> LossResult:
    """The burn-in objective (paper §3.2, reference ``trainPD_ts.py`` burn-in):

    total = w_recon MSE + w_motion WBCE(matched motion masks) + w_fg_nll NLL + alpha mean(W_fg).
    ``motion_ids`` int [B, T, H, W] instance ids (0 = background), ``target`` [B, T, 3, H, W] the
    (strong-view, normalised) input the reconstruction is compared with; ``oc`` is
    ``cfg.objectives`` and ``max_objects`` ``cfg.data.max_objects``.
    """
    attn = out.attn  # [B, T, K, h, w]
    B, T, K, h, w = attn.shape
    n_max = max_objects
    channel, counts = object_channels(motion_ids, (h, w), n_max)  # [B*T, P], [B*T]
    n_obj = max(min(int(counts.max()) if counts.numel() else 0, n_max), 1)  # masks only up to it
    masks = channels_to_masks(channel, n_obj).reshape(B, T, n_obj, h, w)
    valid = torch.arange(n_obj, device=attn.device) < counts.clamp(max=n_max).reshape(B, T, 1)
    motion, stats = matched_mask_loss(
        attn,
        masks,
        valid,
        bg_index,
        size_weight=oc.size_weight,
        normalisation=oc.normalisation,
        prob_scale=oc.prob_scale,
        prob_eps=oc.prob_eps,
    )
    # union of the motion masks (objects beyond max_objects are not in it, like the masks)
    m_fg = (channel < n_max).float().reshape(B, T, h, w)
    stats["objects_cut"] = float((counts - n_max).clamp(min=0).sum())
    fgbg = fg_bg_loss(
        out.fg, m_fg, oc.alpha, w_nll=oc.w_fg_nll, prob_scale=oc.prob_scale, prob_eps=oc.prob_eps
    )
    recon = reconstruction_loss(out.recon, target)
    total = oc.w_recon * recon + oc.w_motion * motion + fgbg.total
    terms = {
        "recon": recon.detach(),
        "motion_bce": motion.detach(),
        "fg_nll": fgbg.nll.detach(),
        "fg_reg": fgbg.reg.detach(),
    }
    stats["motion_fg_share"] = float(m_fg.mean())
    return LossResult(total=total, terms=terms, stats=stats)
