"""EMA teacher for the teacher-student distillation (paper §3.3.1).

At the end of burn-in the student is duplicated; after every optimiser step the teacher becomes
``ema * teacher + (1 - ema) * student`` (keep rate :func:`keep_rate`: ``distill.ema``, 0.996 in the
paper, or ``distill.ema_half_life_steps``). Only the
student receives gradients: the teacher's parameters have ``requires_grad=False`` and it always runs
under ``torch.no_grad()``.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from diod_ray.config import DistillConfig

if TYPE_CHECKING:
    from diod_ray.config import Config

BN_MODES = ("eval", "train")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class EMATeacher:
    """The teacher: a deep copy of the student, updated as an exponential moving average.

    Parameters
    ----------
    student: the student (plain, DDP-wrapped or compiled); copied at construction.
    ema: keep rate (``distill.ema``): teacher = ema * teacher + (1 - ema) * student.
    bn_mode: BatchNorm behaviour of the teacher's forward (``distill.teacher_bn``):

        * ``"eval"``: the whole teacher runs in eval mode, BatchNorm uses its running
          statistics (themselves the EMA of the student's running statistics). Pseudo-labels then do
          not depend on which clips share a batch or on the per-rank batch size under DDP (a rank of
          a multi-GPU run may see 1-2 clips, where batch statistics are noisy), and the teacher is
          the same function when labelling and when evaluated. This is the usual mean-teacher choice.
        * ``"train"`` (default): the reference's behaviour (it never calls ``.eval()``): BatchNorm
          normalises with the teacher batch's own statistics and updates running statistics, which
          the next EMA update then blends back towards the student's. The rest of the teacher runs
          as at eval (see :meth:`_apply_bn_mode`).
    frozen: offline pseudo-labelling (``distill.offline``, Table 4 (b)): the teacher stays the
        end-of-burn-in model and :meth:`update` does nothing.

    Buffers: floating buffers (BatchNorm running mean/var, fixed slot-init or grid buffers) are
    averaged with the same keep rate as the parameters; integer buffers (``num_batches_tracked``) are
    copied from the student. The reference averages the whole ``state_dict``, so integer buffers are
    blended in float and truncated when copied back into the long tensor; copying is the exact
    version of that (it only affects BatchNorm with ``momentum=None``).
    """

    def __init__(self, student: nn.Module, ema: float, bn_mode: str = "eval", frozen: bool = False):
        if not 0.0 <= ema <= 1.0:
            raise ValueError(f"distill.ema must lie in [0, 1], got {ema!r}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"distill.teacher_bn must be one of {BN_MODES}, got {bn_mode!r}")
        self.model: nn.Module = copy.deepcopy(unwrap(student))
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.ema = float(ema)
        self.bn_mode = bn_mode
        self.frozen = bool(frozen)
        self.num_updates = 0
        self._apply_bn_mode()

    # -- forward ------------------------------------------------------------------------------

    def _apply_bn_mode(self) -> None:
        """Eval mode for everything but BatchNorm, which follows ``bn_mode``: only the
        normalisation statistics differ between the modes, never the slot initialisation (with
        ``model.slot_init=learned`` a train-mode module would draw random initial slots)."""
        self.model.eval()
        if self.bn_mode == "train":
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def __call__(self, video: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Teacher forward (``ModelOutput``) under ``torch.no_grad()`` in the configured BN mode."""
        self._apply_bn_mode()
        with torch.no_grad():
            return self.model(video, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # model attributes such as bg_index / grid_hw are read through the teacher
        if name == "model":  # not yet set (during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def to(self, *args: Any, **kwargs: Any) -> EMATeacher:
        self.model.to(*args, **kwargs)
        return self

    # -- EMA -------------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """teacher = ema * teacher + (1 - ema) * student, after each optimiser step (no-op if frozen)."""
        if self.frozen:
            return
        src = unwrap(student)
        t_params = dict(self.model.named_parameters())
        s_params = dict(src.named_parameters())
        if t_params.keys() != s_params.keys():
            missing = sorted(set(t_params) ^ set(s_params))[:5]
            raise ValueError(f"teacher and student parameters differ, e.g. {missing}")
        teach = [t_params[k] for k in t_params]
        stud = [s_params[k].detach() for k in t_params]
        # lerp: t + (1 - ema) * (s - t) = ema * t + (1 - ema) * s, one fused op over all tensors
        torch._foreach_lerp_(teach, stud, 1.0 - self.ema)

        s_bufs = dict(src.named_buffers())
        for name, tb in self.model.named_buffers():
            if name not in s_bufs:
                raise ValueError(f"student has no buffer {name!r} that the teacher has")
            sb = s_bufs[name].detach()
            if tb.is_floating_point():
                tb.lerp_(sb.to(tb.dtype), 1.0 - self.ema)
            else:
                tb.copy_(sb)
        self.num_updates += 1

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors / numbers / strings only, so it loads with ``torch.load(weights_only=True)``."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema,
            "bn_mode": self.bn_mode,
            "frozen": self.frozen,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the weights and update count; ema / bn_mode / frozen stay as configured now."""
        if "model" not in state:
            raise KeyError("teacher state has no 'model' entry (not an EMATeacher.state_dict())")
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state.get("num_updates", 0))


DEFAULT_EMA: float = DistillConfig.ema  # 0.996, the paper's keep rate


def half_life(keep: float) -> float:
    """Steps after which the teacher holds half of a weight it had: ln 0.5 / ln keep (inf at 1)."""
    if keep >= 1.0:
        return math.inf
    if keep <= 0.0:
        return 0.0
    return math.log(0.5) / math.log(keep)


def keep_rate(cfg: Config) -> float:
    """The teacher's EMA keep rate; raises ValueError naming the field on a bad value.

    One precedence rule: ``distill.ema_half_life_steps`` > 0 sets the keep rate to
    ``0.5 ** (1 / half_life)`` (the teacher then forgets half of a student state in that many
    steps) and wins over ``distill.ema``, which must then stay at its default 0.996 (a different
    ``ema`` beside a half-life is an error, so a sweep over ``ema`` cannot be silently ignored);
    ``ema_half_life_steps`` = 0 uses ``distill.ema``. Paper §3.3.1: 0.996, a half-life of ~173 steps.
    """
    d = cfg.distill
    hl = float(d.ema_half_life_steps)
    if not math.isfinite(hl) or hl < 0:
        raise ValueError(
            f"distill.ema_half_life_steps must be >= 0 steps (0 = use distill.ema), got {hl!r}"
        )
    if not 0.0 <= d.ema <= 1.0:
        raise ValueError(f"distill.ema must lie in [0, 1], got {d.ema!r}")
    if hl == 0:
        return float(d.ema)
    if d.ema != DEFAULT_EMA:
        raise ValueError(
            f"distill.ema={d.ema!r} and distill.ema_half_life_steps={hl!r} both set the teacher's "
            f"EMA; set one (ema_half_life_steps=0 to use ema, or leave ema at {DEFAULT_EMA})"
        )
    return 0.5 ** (1.0 / hl)


# distillation should span at least this many teacher half-lives, so that the teacher at the end
# is the student's recent average and not still the burn-in model (the paper: keep rate 0.996, a
# 173-step half-life, over hundreds of distillation epochs of ~115 steps)
MIN_HALF_LIVES = 5.0


def teacher_horizon(cfg: Config, distill_steps: int) -> str | None:
    """None when ``distill_steps`` span at least :data:`MIN_HALF_LIVES` teacher half-lives (or the
    teacher is frozen / there is no distillation), else one line saying how far short it is and
    what to set."""
    if distill_steps <= 0 or cfg.distill.offline:
        return None
    hl = half_life(keep_rate(cfg))
    spans = distill_steps / hl if hl > 0 else math.inf
    if spans >= MIN_HALF_LIVES:
        return None
    return (
        f"distillation is {distill_steps} steps, {spans:.1f} teacher half-lives of {hl:.0f} steps "
        f"(keep rate {keep_rate(cfg):.4f}); at least {MIN_HALF_LIVES:.0f} are needed for the "
        f"teacher to leave the burn-in model: lengthen schedule.distill_epochs or set "
        f"distill.ema_half_life_steps <= {distill_steps / MIN_HALF_LIVES:.3g} (docs/teacher.md)"
    )


def build_teacher(student: nn.Module, cfg: Config) -> EMATeacher:
    """The teacher of a run: EMA with :func:`keep_rate` and ``distill.teacher_bn``; frozen (no EMA)
    when ``distill.offline`` (Table 4 (b): offline pseudo-labelling from the end-of-burn-in model)."""
    d = cfg.distill
    return EMATeacher(student, keep_rate(cfg), d.teacher_bn, frozen=d.offline)
