"""Teacher-student distillation objective (paper §3.3, eq. 2-5) and the ablation modes of Table 4.

Two label sources supervise the student's non-background slots, each through a Hungarian matching
(:func:`~diod_ray.objectives.matching.match_slots`, BCE log-likelihood cost):

* the teacher's object candidates (§3.3.2, :mod:`~diod_ray.objectives.pseudo_labels`) kept with
  eq. (2) score > p, trained with eq. (3) (positive weight 1 + score);
* the fixed motion masks M filtered by the teacher's W_fg (§3.3.3): M' = masks whose eq. (2) score on
  W_fg is > p, trained with eq. (4) (weight 1 + score); M' also replaces M in L_fg/bg (eq. 1).

Eq. (5) sums the two object terms (each normalised per frame by its number of objects), L_fg/bg and
the reconstruction MSE.

Table 4 ablations, all config fields:

* ``distill.connection=one_to_one``: one candidate per teacher slot (row (a)1).
* ``distill.use_motion_masks=false`` (row (a)2, "using only the teacher's pseudo-labels"): no eq. (4)
  term, and L_fg/bg's foreground target m_fg is the union of the kept teacher candidates instead of
  M'. Dropping the NLL term instead would leave only alpha * mean(W_fg), which drives W_fg to zero
  and would starve the foreground-scored pseudo-labels; the union keeps eq. (1) as it is with the
  teacher as the only label source.
* ``distill.offline=true`` (row (b)2): the loss is unchanged; the training loop builds the teacher
  with :func:`diod_ray.teacher.build_teacher`, which freezes it (no EMA) at the end-of-burn-in model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from diod_ray.objectives.bce import normalise_objects, weighted_bce
from diod_ray.objectives.burn_in import fg_bg_loss, reconstruction_loss, squash
from diod_ray.objectives.masks import ids_to_masks
from diod_ray.objectives.matching import match_slots
from diod_ray.objectives.pseudo_labels import Candidates, candidate_score, extract_candidates
from diod_ray.objectives.result import LossResult

if TYPE_CHECKING:
    from diod_ray.config import DistillConfig, ObjectivesConfig
    from diod_ray.model.diod import ModelOutput


# ---- the equations -------------------------------------------------------------------------


def teacher_bce_loss(matched_probs: Tensor, candidates: Tensor, scores: Tensor) -> Tensor:
    """Eq. (3): L_BCE,t(c, W) = -1/N sum_i [(1 + score_c) c(i) log W(i) + (1 - c(i)) log(1 - W(i))].

    matched_probs [N, C, P] the student slot matched to each teacher candidate (squashed),
    candidates [N, C, P] binary, scores [N, C] eq. (2) confidences. Returns per-candidate [N, C].
    """
    return weighted_bce(matched_probs, candidates, 1.0 + scores)


def motion_bce_loss(matched_probs: Tensor, motion: Tensor, scores: Tensor) -> Tensor:
    """Eq. (4): L_BCE,s(m', W) = -1/N sum_i [(1 + score_m') m'(i) log W(i) + (1 - m'(i)) log(1 - W(i))].

    matched_probs [N, O, P], motion [N, O, P] binary filtered motion masks m' in M', scores [N, O]
    their eq. (2) confidence on the teacher's W_fg. Returns per-mask [N, O].
    """
    return weighted_bce(matched_probs, motion, 1.0 + scores)


def filter_motion_masks(
    masks: Tensor, valid: Tensor, teacher_fg: Tensor, p: float
) -> tuple[Tensor, Tensor]:
    """§3.3.3: score each motion mask with eq. (2) on the teacher's W_fg; M' = scores above p.

    masks [B, T, O, h, w] binary, valid [B, T, O], teacher_fg [B, T, h, w].
    Returns (kept [B, T, O] bool, scores [B, T, O] float; 0 on invalid masks).
    """
    scores = candidate_score(masks, teacher_fg.detach().float().unsqueeze(2))  # [B, T, O]
    scores = torch.where(valid, scores, torch.zeros_like(scores))
    return valid & (scores > p), scores


def global_loss(
    motion_per_obj: Tensor,
    motion_used: Tensor,
    teacher_per_obj: Tensor,
    teacher_used: Tensor,
    fg_bg: Tensor,
    mse: Tensor,
    oc: ObjectivesConfig,
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (5): L = 1/|M'| sum L_BCE,s + 1/|C| sum L_BCE,t + L_fg/bg(m'_fg, W_fg) + L_mse.

    ``*_per_obj`` [B, T, O] per-object losses and ``*_used`` [B, T, O] the matched objects. The
    1/|M'| and 1/|C| normalisations are per frame (the number of objects varies across frames); a
    frame without objects contributes 0 to that term. Over frames the terms are averaged with
    ``objectives.normalisation`` (:func:`~diod_ray.objectives.bce.normalise_objects`), like burn-in:
    "paper" = mean over the frames that have objects of that kind, "reference" = sum over frames / B.
    Weights ``objectives.w_motion``, ``w_teacher``, ``w_recon`` (``oc``) are 1 in the paper
    (``fg_bg`` is already eq. (1) with its alpha). Returns (total, normalised motion term,
    normalised teacher term).
    """
    motion = normalise_objects(motion_per_obj, motion_used, oc.normalisation)
    teacher = normalise_objects(teacher_per_obj, teacher_used, oc.normalisation)
    total = oc.w_motion * motion + oc.w_teacher * teacher + fg_bg + oc.w_recon * mse
    return total, motion, teacher


# ---- helpers -------------------------------------------------------------------------------


def _match_and_gather(
    probs: Tensor, targets: Tensor, valid: Tensor, bg_index: int
) -> tuple[Tensor, Tensor]:
    """Hungarian match of targets [N, O, P] to the non-background slots of probs [N, K, P].

    Returns the matched slot maps [N, O, P] and the slot index [N, O] (0..K-1, -1 = unmatched).
    """
    n, o, p = targets.shape
    match = match_slots(probs, targets, valid, exclude_slot=bg_index)  # [N, O]
    idx = match.clamp(min=0).unsqueeze(-1).expand(n, o, p)
    return probs.gather(1, idx), match


def _agreement(student_attn: Tensor, cand_masks: Tensor, match: Tensor) -> float:
    """Mean IoU between each matched teacher candidate and its student slot's argmax region.

    student_attn [N, K, P]; cand_masks [N, C, P]; match [N, C] slot index (-1 = none).
    1.0 means the student already segments every kept candidate exactly as the teacher does.
    """
    used = match >= 0
    if not bool(used.any()):
        return 0.0
    arg = student_attn.argmax(1)  # [N, P] slot id
    student_mask = arg.unsqueeze(1) == match.unsqueeze(-1)  # [N, C, P]
    cand = cand_masks > 0.5
    inter = (student_mask & cand).sum(-1).float()
    union = (student_mask | cand).sum(-1).float().clamp(min=1)
    return float((inter / union)[used].mean())


# ---- the two label sources ----------------------------------------------------------------


@dataclass
class TeacherLabels:
    """The teacher's kept candidates matched to the student's slots, with their eq. (3) loss."""

    cands: Candidates
    masks: Tensor  # [N, C, P] kept candidates (C = the most kept in one frame)
    valid: Tensor  # [N, C] kept
    match: Tensor  # [N, C] matched student slot, -1 = none
    per_obj: Tensor  # [N, C] eq. (3)
    used: Tensor  # [N, C] kept and matched


@dataclass
class MotionLabels:
    """M' (the motion masks the teacher's W_fg confirms) matched to the student's slots, with
    their eq. (4) loss, and the foreground target m'_fg of eq. (1)."""

    per_obj: Tensor  # [N, O] eq. (4)
    used: Tensor  # [N, O] in M' and matched
    fg: Tensor  # [B, T, h, w] the union of M' (or of the kept candidates, Table 4 (a) row 2)
    total: float  # valid motion masks
    kept: float  # masks in M'
    kept_share: float  # |M'| / |M|, 0 without motion masks


def teacher_labels(
    probs: Tensor, t_attn: Tensor, t_fg: Tensor, d: DistillConfig, bg_index: int
) -> TeacherLabels:
    """§3.3.2: candidates of the teacher's attention t_attn [N, K, h, w] scored on t_fg [N, h, w]
    (eq. 2) and filtered by p, matched to the student's squashed slots probs [N, K, P], eq. (3)."""
    n, p = probs.shape[0], probs.shape[2]
    cands = extract_candidates(t_attn, t_fg, d, bg_index)
    c = cands.max_kept
    masks = cands.masks_upto(c).reshape(n, c, p)  # kept candidates come first
    valid = cands.valid[:, :c]
    cand_probs, match = _match_and_gather(probs, masks, valid, bg_index)
    per_obj = teacher_bce_loss(cand_probs, masks, cands.scores[:, :c])  # [N, C]
    return TeacherLabels(cands, masks, valid, match, per_obj, valid & (match >= 0))


def motion_labels(
    probs: Tensor,
    motion_ids: Tensor,
    t_fg: Tensor,
    teacher: TeacherLabels,
    d: DistillConfig,
    bg_index: int,
    max_objects: int,
) -> MotionLabels:
    """§3.3.3: the motion masks of motion_ids [B, T, H, W] filtered by the teacher's W_fg t_fg
    [B, T, h, w] (M'), matched to probs [N, K, P], eq. (4); M' is eq. (1)'s foreground target.
    With ``distill.use_motion_masks=false`` (Table 4 (a) row 2) there is no eq. (4) term and the
    kept teacher candidates are the foreground target."""
    b, t, h, w = t_fg.shape
    n, p = b * t, h * w
    if not d.use_motion_masks:  # the teacher's kept candidates are the only label source
        m_fg = (teacher.masks * teacher.valid[..., None]).sum(1).clamp(max=1.0)
        return MotionLabels(
            per_obj=probs.new_zeros(n, 0),
            used=torch.zeros(n, 0, dtype=torch.bool, device=probs.device),
            fg=m_fg.reshape(b, t, h, w),
            total=0.0,
            kept=0.0,
            kept_share=0.0,
        )
    masks, valid = ids_to_masks(motion_ids, (h, w), max_objects)  # [B,T,O,h,w]
    o = max(int(valid.sum(-1).max()) if valid.numel() else 0, 1)  # valid masks are a prefix
    masks, valid = masks[:, :, :o], valid[:, :, :o]
    kept, m_scores = filter_motion_masks(masks, valid, t_fg, d.p)
    m_masks = masks.reshape(n, o, p)
    m_probs, m_match = _match_and_gather(probs, m_masks, kept.reshape(n, o), bg_index)
    total, n_kept = float(valid.sum()), float(kept.sum())
    return MotionLabels(
        per_obj=motion_bce_loss(m_probs, m_masks, m_scores.reshape(n, o)),
        used=kept.reshape(n, o) & (m_match >= 0),
        fg=(masks * kept[..., None, None]).sum(2).clamp(max=1.0),  # [B, T, h, w] union of M'
        total=total,
        kept=n_kept,
        kept_share=n_kept / total if total else 0.0,
    )


# ---- the objective -------------------------------------------------------------------------


def distill_loss(
    student: ModelOutput,
    teacher: ModelOutput,
    motion_ids: Tensor,
    target: Tensor,
    oc: ObjectivesConfig,
    d: DistillConfig,
    bg_index: int,
    *,
    max_objects: int,
) -> LossResult:
    """The distillation objective, eq. (5), with the ablation modes of ``d`` (``cfg.distill``);
    ``oc`` is ``cfg.objectives`` and ``max_objects`` ``cfg.data.max_objects``.

    student: the student's output on the strong view; teacher: the teacher's output on the weak view
    (same geometry); motion_ids int [B, T, H, W] motion-mask instance ids (0 = background);
    target [B, T, 3, H, W] the strong view the reconstruction is compared with.

    stats: candidates_kept / candidates_dropped (teacher candidates above / below p, whole batch),
    candidates_small (regions at or under the size threshold), candidates_per_frame, frames (B*T),
    frames_with_kept_share (frames with at least one kept candidate), candidates_kept_area (kept
    candidates' summed share of their frame), motion_total / motion_kept
    (valid motion masks / those in M'), motion_kept_share (|M'| / |M|; 0 when there is no motion
    mask), teacher_matched (matched kept
    candidates), teacher_student_agreement (mean IoU over matched pairs of a kept teacher candidate
    and the student's argmax region of its matched slot; 0 when nothing is matched),
    teacher_fg_share / student_fg_share (mean W_fg). All stats are finite floats.
    """
    b, t, k, h, w = student.attn.shape
    n, p = b * t, h * w
    s_attn = student.attn.reshape(n, k, p)
    probs = squash(s_attn, oc.prob_scale, oc.prob_eps)  # [N, K, P]; matching skips bg_index
    t_attn = teacher.attn.detach().float().reshape(n, k, h, w)
    t_fg = teacher.fg.detach().float()  # [B, T, h, w]

    tl = teacher_labels(probs, t_attn, t_fg.reshape(n, h, w), d, bg_index)
    ml = motion_labels(probs, motion_ids, t_fg, tl, d, bg_index, max_objects)
    fgbg = fg_bg_loss(
        student.fg,
        ml.fg,
        oc.alpha,
        w_nll=oc.w_fg_nll,
        prob_scale=oc.prob_scale,
        prob_eps=oc.prob_eps,
    )
    mse = reconstruction_loss(student.recon, target)
    c = tl.masks.shape[1]
    total, motion_term, teacher_term = global_loss(
        ml.per_obj.reshape(b, t, ml.per_obj.shape[1]),
        ml.used.reshape(b, t, ml.used.shape[1]),
        tl.per_obj.reshape(b, t, c),
        tl.used.reshape(b, t, c),
        fgbg.total,
        mse,
        oc,
    )
    terms = {
        "recon": mse.detach(),
        "motion_bce": motion_term.detach(),
        "teacher_bce": teacher_term.detach(),
        "fg_nll": fgbg.nll.detach(),
        "fg_reg": fgbg.reg.detach(),
    }
    return LossResult(total=total, terms=terms, stats=_stats(tl, ml, s_attn, t_fg, student))


def _stats(
    tl: TeacherLabels, ml: MotionLabels, s_attn: Tensor, t_fg: Tensor, student: ModelOutput
) -> dict[str, float]:
    """The stats of :func:`distill_loss` (its docstring says what each is)."""
    cands, n = tl.cands, s_attn.shape[0]
    return {
        "candidates_kept": float(cands.n_kept),
        "candidates_dropped": float(cands.n_dropped),
        "candidates_small": float(cands.n_small),
        "candidates_per_frame": float(cands.n_kept) / max(n, 1),
        "frames": float(n),
        "frames_with_kept_share": float((cands.valid.sum(1) > 0).float().mean()) if n else 0.0,
        "candidates_kept_area": cands.kept_area_sum(),
        "motion_total": ml.total,
        "motion_kept": ml.kept,
        "motion_kept_share": ml.kept_share,
        "teacher_matched": float(tl.used.sum()),
        "teacher_student_agreement": _agreement(s_attn.detach(), tl.masks, tl.match),
        "teacher_fg_share": float(t_fg.mean()),
        "student_fg_share": float(student.fg.detach().float().mean()),
    }
