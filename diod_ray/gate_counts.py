"""Counters of the teacher pass at the switch that the gates of :mod:`diod_ray.preconditions` read.

Per window of evaluation clips with GT, :class:`TeacherGatePass` adds up the teacher's mean W_fg on
static GT objects, moving GT objects and background, each GT object's share of the frame
(:func:`fg_counts`), and how many motion masks M and filtered masks M' (the teacher's W_fg filter
of §3.3.3) overlap a GT object with IoU > 0.5 (:func:`motion_counts`). Every counter is a sum, so
the ranks of a DDP job each count their share and :meth:`GateCounts.all_reduce` sums them. No Ray.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from diod_ray.config import Config


@dataclass
class GateCounts:
    """Sums over (frame, GT object) and over motion masks; all-reducible (float64 vector)."""

    static_objects: float = 0.0  # (frame, static GT object) pairs, moving flags known
    static_fg_sum: float = 0.0  # sum of their mean W_fg
    moving_objects: float = 0.0
    moving_fg_sum: float = 0.0
    background_pixels: float = 0.0
    background_fg_sum: float = 0.0
    objects: float = 0.0  # every visible (frame, GT object) pair
    object_area_sum: float = 0.0  # sum of their share of the frame
    motion_masks: float = 0.0  # valid motion masks M
    motion_hit: float = 0.0  # ... with IoU > 0.5 with a GT object
    filtered_masks: float = 0.0  # M': motion masks passing the teacher's W_fg filter
    filtered_hit: float = 0.0

    def add(self, other: GateCounts) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        import torch

        vals = [getattr(self, f.name) for f in dataclasses.fields(self)]
        return torch.tensor(vals, dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, t: Tensor) -> GateCounts:
        return cls(*(float(v) for v in t.cpu().tolist()))

    def all_reduce(self, device: torch.device | str = "cpu") -> GateCounts:
        """The sum over the ranks of a DDP job (a copy when not distributed); every rank calls it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return dataclasses.replace(self)
        t = self.to_tensor(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return GateCounts.from_tensor(t)

    def summary(self) -> dict[str, float | None]:
        return {
            "fg_static": _ratio(self.static_fg_sum, self.static_objects),
            "fg_moving": _ratio(self.moving_fg_sum, self.moving_objects),
            "fg_background": _ratio(self.background_fg_sum, self.background_pixels),
            "object_area": _ratio(self.object_area_sum, self.objects),
            "motion_precision": _ratio(self.motion_hit, self.motion_masks),
            "filtered_motion_precision": _ratio(self.filtered_hit, self.filtered_masks),
            "n_static_objects": self.static_objects,
            "n_moving_objects": self.moving_objects,
            "n_motion_masks": self.motion_masks,
            "n_filtered_masks": self.filtered_masks,
        }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fg_counts(
    fg: Tensor, gt: Tensor, gt_moving: Tensor | None = None, known: Tensor | None = None
) -> GateCounts:
    """W_fg per GT object and on background, and the objects' areas, for N frames at one grid.

    fg float [N, h, w] the teacher's W_fg; gt int [N, h, w] GT ids at the same grid (0 =
    background); gt_moving bool [N, G+1] indexed by GT id (None: moving flags unknown, so no
    static / moving counts); known bool [N]: the frame's clip has moving flags (None = all).
    Each (frame, object) counts once, with the mean W_fg over its pixels (as ``FgCoverage``);
    background is the pixel mean."""
    import torch

    n, h, w = gt.shape
    if tuple(fg.shape) != (n, h, w):
        raise ValueError(f"fg must be [N, h, w] = {(n, h, w)}, got {tuple(fg.shape)}")
    device = gt.device
    gt_ids, rows = torch.unique(gt.long(), return_inverse=True)  # [U], [N, h, w]
    u = gt_ids.numel()
    frame = torch.arange(n, device=device).view(n, 1, 1)
    cell = (frame * u + rows).reshape(-1)  # [N*h*w] (frame, GT id) cell
    area = torch.bincount(cell, minlength=n * u).view(n, u).double()  # [N, U] pixels
    fg_sum = torch.bincount(cell, weights=fg.reshape(-1).double(), minlength=n * u).view(n, u)
    is_bg = (gt_ids == 0).view(1, u)
    present = (area > 0) & ~is_bg  # [N, U] visible objects
    mean_fg = fg_sum / area.clamp(min=1)  # [N, U]
    out = GateCounts(
        background_pixels=float(area[:, gt_ids == 0].sum()),
        background_fg_sum=float(fg_sum[:, gt_ids == 0].sum()),
        objects=float(present.sum()),
        object_area_sum=float((area / (h * w))[present].sum()),
    )
    if gt_moving is None:
        return out
    mv = gt_moving.to(device).bool()  # [N, G+1]
    cols = mv.shape[1]
    moving = mv.index_select(1, gt_ids.clamp(max=cols - 1)) & (gt_ids < cols).view(1, u)
    rated = present if known is None else present & known.to(device).bool().view(n, 1)
    static, moving = rated & ~moving, rated & moving
    out.static_objects = float(static.sum())
    out.static_fg_sum = float(mean_fg[static].sum())
    out.moving_objects = float(moving.sum())
    out.moving_fg_sum = float(mean_fg[moving].sum())
    return out


def mask_gt_hits(masks: Tensor, gt: Tensor) -> Tensor:
    """Which of O binary masks per frame overlap some GT object with IoU > 0.5 (exact integers).

    masks [N, O, h, w] binary, non-overlapping (motion masks: one instance id per pixel); gt int
    [N, h, w] at the same grid. Returns bool [N, O]; an empty mask hits nothing."""
    import torch

    n, o, h, w = masks.shape
    device = gt.device
    m = masks.to(device) > 0.5
    channel = torch.where(m.any(1), m.float().argmax(1), torch.full_like(gt, o))  # [N, h, w]
    gt_ids, rows = torch.unique(gt.long(), return_inverse=True)
    u = gt_ids.numel()
    frame = torch.arange(n, device=device).view(n, 1, 1)
    flat = (frame * u + rows) * (o + 1) + channel  # [N, h, w] cell of (frame, GT id, mask)
    table = torch.bincount(flat.reshape(-1), minlength=n * u * (o + 1)).view(n, u, o + 1)
    inter = table[:, :, :o]  # [N, U, O]
    gt_area = table.sum(2)  # [N, U]
    mask_area = inter.sum(1)  # [N, O]
    union = gt_area.unsqueeze(2) + mask_area.unsqueeze(1) - inter
    hit = (2 * inter > union) & (gt_ids > 0).view(1, u, 1)  # IoU > 0.5, background excluded
    return hit.any(1)


def motion_counts(masks: Tensor, valid: Tensor, kept: Tensor, gt: Tensor) -> GateCounts:
    """Precision counts of the motion masks M (``valid``) and of M' (``kept``, the teacher's W_fg
    filter of §3.3.3) against GT. masks [N, O, h, w], valid / kept bool [N, O], gt int [N, h, w]."""
    hit = mask_gt_hits(masks, gt)
    valid, kept = valid.to(hit.device), kept.to(hit.device)
    return GateCounts(
        motion_masks=float(valid.sum()),
        motion_hit=float((hit & valid).sum()),
        filtered_masks=float(kept.sum()),
        filtered_hit=float((hit & kept).sum()),
    )


class TeacherGatePass:
    """``evaluate_teacher``'s per-window hook: adds each window's :class:`GateCounts` from the
    teacher's output (W_fg as distillation sees it) and the batch's GT and motion masks."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.counts = GateCounts()

    def __call__(self, out: Any, batch: dict, win: slice) -> None:
        from diod_ray.metrics import downsample_nearest
        from diod_ray.objectives.distill import filter_motion_masks
        from diod_ray.objectives.masks import ids_to_masks

        if "gt" not in batch:
            return
        fg = out.fg.float()  # [B, t, h, w]
        b, t, h, w = fg.shape
        n = b * t
        device = fg.device
        gt = downsample_nearest(batch["gt"][:, win].to(device), (h, w)).reshape(n, h, w)
        moving = batch.get("gt_moving")
        mv = None if moving is None else moving[:, win].reshape(n, -1)
        known = batch.get("moving_known")  # [B]
        known_n = None if known is None else known.to(device).bool().repeat_interleave(t)
        self.counts.add(fg_counts(fg.reshape(n, h, w), gt, mv, known_n))
        if "motion" in batch:
            masks, valid = ids_to_masks(
                batch["motion"][:, win].to(device), (h, w), self.cfg.data.max_objects
            )  # [B, t, O, h, w], [B, t, O]
            kept, _ = filter_motion_masks(masks, valid, fg, self.cfg.distill.p)
            o = masks.shape[2]
            self.counts.add(
                motion_counts(
                    masks.reshape(n, o, h, w), valid.reshape(n, o), kept.reshape(n, o), gt
                )
            )
