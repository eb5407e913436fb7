"""Is the teacher doing anything? Counts of its pseudo-labels (paper §3.3.2-3.3.3), per epoch and
on evaluation clips with ground truth (docs/teacher.md).

Two sources, one accumulator (:class:`TeacherActivity`):

* training steps (no GT): :meth:`TeacherActivity.add_step` reads the ``stats`` of
  :func:`~diod_ray.objectives.distill.distill_loss` (candidates kept, frames, motion masks kept);
* evaluation batches with GT: :func:`evaluate_teacher` runs the teacher on the clips, extracts its
  candidates exactly as distillation does (:func:`~diod_ray.objectives.pseudo_labels.
  extract_candidates`, the W_fg motion-mask filter) and also counts how many kept candidates hit a
  GT object (IoU > 0.5: precision) and how many static / moving GT objects a kept candidate covers.

Everything is batched: one argmax + component labelling per batch (in ``extract_candidates``) and
one ``bincount`` contingency table of (frame, GT object, candidate); no loop over frames or objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from diod_ray.config import Config
    from diod_ray.objectives.pseudo_labels import Candidates


@dataclass
class TeacherActivity:
    """Sums over a span of frames (a distillation epoch, or one evaluation pass)."""

    frames: float = 0.0
    kept: float = 0.0  # kept teacher candidates (score > p)
    frames_with_kept: float = 0.0  # frames with at least one kept candidate
    motion_total: float = 0.0  # valid motion masks
    motion_kept: float = 0.0  # motion masks that pass the W_fg filter (M')
    gt_frames: float = 0.0  # frames that came with GT (evaluation only)
    kept_hit: float = 0.0  # kept candidates with IoU > 0.5 with a GT object
    gt_kept: float = 0.0  # kept candidates on frames with GT (the precision's denominator)
    static_gt: float = 0.0
    static_covered: float = 0.0  # static GT objects with IoU > 0.5 with a kept candidate
    moving_gt: float = 0.0
    moving_covered: float = 0.0
    # sum over kept candidates of their share of the frame (a candidate that is half the frame is
    # a region of the image, not an object: the positional collapse of docs/results.md)
    kept_area: float = 0.0

    # -- filling ---------------------------------------------------------------------------

    def add_step(self, stats: dict[str, float]) -> None:
        """One distillation step's ``LossResult.stats`` (see ``distill_loss``)."""
        frames = float(stats.get("frames", 0.0))
        self.frames += frames
        self.kept += float(stats.get("candidates_kept", 0.0))
        self.kept_area += float(stats.get("candidates_kept_area", 0.0))
        self.frames_with_kept += float(stats.get("frames_with_kept_share", 0.0)) * frames
        self.motion_total += float(stats.get("motion_total", 0.0))
        self.motion_kept += float(stats.get("motion_kept", 0.0))

    def add(self, other: TeacherActivity) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        return torch.tensor(
            [getattr(self, f.name) for f in dataclasses.fields(self)],
            dtype=torch.float64,
            device=device,
        )

    @classmethod
    def from_tensor(cls, t: Tensor) -> TeacherActivity:
        return cls(*(float(v) for v in t.cpu().tolist()))

    def all_reduce(self, device: torch.device | str = "cpu") -> TeacherActivity:
        """The sum over the ranks of a DDP job (this object unchanged when not distributed).

        Every rank must call it the same number of times (the training loop does, per epoch)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return dataclasses.replace(self)
        t = self.to_tensor(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return TeacherActivity.from_tensor(t)

    # -- reading ---------------------------------------------------------------------------

    def summary(self) -> dict[str, float]:
        """Rates; the GT-based ones only when GT frames were seen (NaN when no object to rate).

        kept_per_frame, frames_with_kept (share), kept_area (a kept candidate's mean share of its
        frame), motion_kept_share (|M'| / |M|), and with GT: precision (kept candidates hitting a
        GT object), static_cover / moving_cover (GT objects that some kept candidate hits), n_kept,
        n_static_gt."""
        out = {
            "kept_per_frame": _div(self.kept, self.frames),
            "frames_with_kept": _div(self.frames_with_kept, self.frames),
            "kept_area": _div(self.kept_area, self.kept),
            "motion_kept_share": _div(self.motion_kept, self.motion_total),
            "n_frames": self.frames,
        }
        if self.gt_frames > 0:
            out.update(
                {
                    "precision": _div(self.kept_hit, self.gt_kept),
                    "static_cover": _div(self.static_covered, self.static_gt),
                    "moving_cover": _div(self.moving_covered, self.moving_gt),
                    "n_kept": self.gt_kept,
                    "n_static_gt": self.static_gt,
                }
            )
        return out


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# ============================================================================================
# GT-based counts of one batch of frames
# ============================================================================================


def candidate_gt_counts(
    cands: Candidates, gt: Tensor, gt_moving: Tensor | None = None
) -> TeacherActivity:
    """Kept candidates of N frames against their GT (IoU > 0.5, the F1@50 rule of docs/metrics.md).

    cands: :func:`extract_candidates` of N frames at the grid (h, w); gt: int [N, h, w] GT ids at
    the same grid (0 = background); gt_moving: bool [N, G+1] indexed by GT id (None = all static).
    Returns the GT counts (kept_hit, gt_kept, static/moving gt and covered, gt_frames).
    """
    n, h, w = cands.index_map.shape
    if tuple(gt.shape) != (n, h, w):
        raise ValueError(f"gt must be [N, h, w] = {(n, h, w)}, got {tuple(gt.shape)}")
    device = gt.device
    c = max(cands.max_kept, 1)
    idx = cands.index_map.to(device)  # [N, h, w] candidate index, -1 = none
    kept_mask = cands.valid.to(device)  # [N, C]
    padded = torch.zeros(n, c, dtype=torch.bool, device=device)
    padded[:, : min(c, kept_mask.shape[1])] = kept_mask[:, :c]
    is_kept = cands.kept_pixels().to(device)
    col = torch.where(is_kept, idx + 1, torch.zeros_like(idx))  # [N, h, w] 0 = no kept candidate
    gt_ids, rows = torch.unique(gt.long(), return_inverse=True)  # [U], [N, h, w]
    u = gt_ids.numel()
    frame = torch.arange(n, device=device).view(n, 1, 1)
    flat = (frame * u + rows) * (c + 1) + col  # [N, h, w] cell of the (frame, gt, cand) table
    table = torch.bincount(flat.reshape(-1), minlength=n * u * (c + 1)).view(n, u, c + 1)
    inter = table[:, :, 1:]  # [N, U, C] pixels of GT u in candidate c
    gt_area = table.sum(2)  # [N, U]
    cand_area = inter.sum(1)  # [N, C]
    union = gt_area.unsqueeze(2) + cand_area.unsqueeze(1) - inter
    fg_row = (gt_ids > 0).view(1, u, 1)
    hit = (2 * inter > union) & fg_row & padded.unsqueeze(1)  # IoU > 0.5, exact on integers
    present = (gt_area > 0) & (gt_ids > 0).view(1, u)  # [N, U]
    covered = hit.any(2) & present
    if gt_moving is not None:
        mv = gt_moving.to(device).bool()  # [N, G+1]
        cols = mv.shape[1]
        moving = mv.index_select(1, gt_ids.clamp(max=cols - 1)) & (gt_ids < cols).view(1, u)
    else:
        moving = torch.zeros_like(present)
    static = present & ~moving
    moving = present & moving
    return TeacherActivity(
        gt_frames=float(n),
        kept_hit=float(hit.any(1).sum()),
        gt_kept=float(padded.sum()),
        static_gt=float(static.sum()),
        static_covered=float((covered & static).sum()),
        moving_gt=float(moving.sum()),
        moving_covered=float((covered & moving).sum()),
    )


# ============================================================================================
# The teacher on evaluation clips
# ============================================================================================


@contextlib.contextmanager
def _teacher_mode(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """The teacher's forward mode without side effects: eval mode, or (``teacher_bn=train``)
    BatchNorm on batch statistics with its running statistics left unchanged."""
    from diod_ray.inference import batchnorm_batch_statistics, eval_mode

    mode = batchnorm_batch_statistics(model) if bn_mode == "train" else eval_mode(model)
    with mode:
        yield


def evaluate_teacher(
    teacher: Any,
    batches: Iterable[dict],
    cfg: Config,
    all_reduce: bool = False,
    on_window: Callable[[Any, dict, slice], None] | None = None,
) -> dict[str, float]:
    """The teacher's pseudo-labels on evaluation batches, with GT-based precision and coverage.

    teacher: an :class:`~diod_ray.teacher.EMATeacher` (its ``bn_mode`` is honoured) or a plain
    model; batches: dicts from ``iter_eval_batches`` (``frames`` [B, T, 3, H, W] normalised, ``gt``
    [B, T, H, W], optional ``gt_moving`` [B, T, G+1] and ``motion`` [B, T, H, W]). Clips are cut
    into windows of ``data.clip_len`` frames like the clean evaluation protocol. Returns
    ``TeacherActivity.summary()`` of the whole pass (candidates kept per frame, frames with a kept
    candidate, motion masks kept, precision, static / moving cover). ``all_reduce``: sum the
    counts over the ranks of a DDP job first (every rank must then call it). ``on_window``: called
    with (the teacher's output, the batch, the window's frame slice) for every window, so a caller
    measures more on the same forward pass (:mod:`diod_ray.preconditions`).
    """
    from diod_ray.metrics import downsample_nearest
    from diod_ray.objectives.distill import filter_motion_masks
    from diod_ray.objectives.masks import ids_to_masks
    from diod_ray.objectives.pseudo_labels import extract_candidates

    model = getattr(teacher, "model", teacher)
    bn_mode = getattr(teacher, "bn_mode", "eval")
    bg = int(model.bg_index)
    device = next(model.parameters()).device
    acc = TeacherActivity()
    length = max(1, cfg.data.clip_len)
    with _teacher_mode(model, bn_mode), torch.inference_mode():
        for batch in batches:
            frames = batch["frames"].to(device)
            total_t = frames.shape[1]
            for s in range(0, total_t, length):
                win = slice(s, min(s + length, total_t))
                out = model(frames[:, win])
                if on_window is not None:
                    on_window(out, batch, win)
                b, t, k, h, w = out.attn.shape
                n = b * t
                attn = out.attn.float().reshape(n, k, h, w)
                fg = out.fg.float()  # [B, t, h, w]
                cands = extract_candidates(attn, fg.reshape(n, h, w), cfg.distill, bg)
                step = {
                    "frames": float(n),
                    "candidates_kept": float(cands.n_kept),
                    "frames_with_kept_share": float((cands.valid.sum(1) > 0).float().mean()),
                    "candidates_kept_area": cands.kept_area_sum(),
                }
                if "motion" in batch:
                    masks, valid = ids_to_masks(
                        batch["motion"][:, win].to(device), (h, w), cfg.data.max_objects
                    )  # [B, t, O, h, w], [B, t, O]
                    kept, _ = filter_motion_masks(masks, valid, fg, cfg.distill.p)
                    step["motion_total"] = float(valid.sum())
                    step["motion_kept"] = float(kept.sum())
                acc.add_step(step)
                if "gt" in batch:
                    gt = downsample_nearest(batch["gt"][:, win].to(device), (h, w))  # [B,t,h,w]
                    moving = batch.get("gt_moving")
                    mv = None if moving is None else moving[:, win].reshape(n, -1)
                    acc.add(candidate_gt_counts(cands, gt.reshape(n, h, w), mv))
    if all_reduce:  # every rank evaluated its share of the clips: sum the counts
        acc = acc.all_reduce(device)
    return acc.summary()
