"""One optimisation step of either phase: forward (mixed precision on a GPU), the phase's loss
(burn-in, paper §3.2; distillation, §3.3), backward, clip, optimiser step, EMA update of the
teacher (§3.3.1)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from diod_ray.config import Config
from diod_ray.teacher import unwrap
from diod_ray.training.schedule import DISTILL, Plan, learning_rate
from diod_ray.training.state import TrainState


def outputs_to_float(out: Any) -> Any:
    """Cast the floating tensors of a model output to fp32 so losses run in full precision."""
    changes = {
        f.name: getattr(out, f.name).float()
        for f in dataclasses.fields(out)
        if torch.is_tensor(getattr(out, f.name)) and getattr(out, f.name).is_floating_point()
    }
    return dataclasses.replace(out, **changes)


def autocast_context(cfg: Config, device: torch.device):
    if device.type == "cuda" and cfg.run.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if cfg.run.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def train_step(ts: TrainState, batch: dict[str, torch.Tensor], plan: Plan):
    """Forward, loss of the current phase, backward, clip, step, EMA. Returns (LossResult, out)."""
    from diod_ray.objectives.burn_in import burn_in_loss
    from diod_ray.objectives.distill import distill_loss

    cfg, model = ts.cfg, ts.student
    bg = unwrap(model).bg_index
    for group in ts.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, ts.step, plan)
    with autocast_context(cfg, ts.device):
        out = model(batch["strong"])
        teacher_out = None
        if plan.phase(ts.step) == DISTILL:
            teacher_out = ts.teacher(batch["weak"])
    out = outputs_to_float(out)
    if teacher_out is None:
        res = burn_in_loss(
            out, batch["motion"], batch["strong"], cfg.objectives, bg,
            max_objects=cfg.data.max_objects,
        )  # fmt: skip
    else:
        res = distill_loss(
            out, outputs_to_float(teacher_out), batch["motion"], batch["strong"],
            cfg.objectives, cfg.distill, bg, max_objects=cfg.data.max_objects,
        )  # fmt: skip
    ts.optimizer.zero_grad(set_to_none=True)
    if ts.scaler is not None:
        ts.scaler.scale(res.total).backward()
        ts.scaler.unscale_(ts.optimizer)
    else:
        res.total.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    if ts.scaler is not None:
        ts.scaler.step(ts.optimizer)
        ts.scaler.update()
    else:
        ts.optimizer.step()
    if ts.teacher is not None:
        ts.teacher.update(unwrap(model))
    ts.step += 1
    return res, out, teacher_out
