"""Phases and learning rate as pure functions of the global step (never of process lifetime)."""

from __future__ import annotations

from dataclasses import dataclass

from diod_ray.config import Config

BURN_IN = "burn_in"
DISTILL = "distill"


@dataclass(frozen=True)
class Plan:
    """Step boundaries of a run: burn-in is steps [0, burn_in_end), distillation the rest."""

    steps_per_epoch: int
    burn_in_epochs: int
    distill_epochs: int
    # optim.restart_at_epoch: -1 = the switch (burn_in_epochs)
    restart_epoch: int = -1

    @property
    def burn_in_end(self) -> int:
        return self.burn_in_epochs * self.steps_per_epoch

    @property
    def restart_step(self) -> int:
        """The step at which warm-up and Adam restart (``optim.restart_*``): the switch to
        distillation, or ``optim.restart_at_epoch`` (a control branch's start)."""
        epoch = self.burn_in_epochs if self.restart_epoch < 0 else self.restart_epoch
        return epoch * self.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return (self.burn_in_epochs + self.distill_epochs) * self.steps_per_epoch

    @property
    def total_epochs(self) -> int:
        return self.burn_in_epochs + self.distill_epochs

    def phase(self, step: int) -> str:
        """The phase a step belongs to, derived from the step alone (so resume is exact)."""
        return BURN_IN if step < self.burn_in_end else DISTILL

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch


def make_plan(cfg: Config, steps_per_epoch: int) -> Plan:
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return Plan(
        steps_per_epoch,
        cfg.schedule.burn_in_epochs,
        cfg.schedule.distill_epochs,
        cfg.optim.restart_at_epoch,
    )


def learning_rate(cfg: Config, step: int, plan: Plan) -> float:
    """The reference schedule: lr = base * min(1, s / warmup) * decay_rate ** (step / decay_steps).

    ``s`` counts from 0 at the start of the run, or, when ``optim.restart_warmup_at_distill`` is
    set (the default: the reference relaunches distillation), from :attr:`Plan.restart_step`
    (the start of distillation, or of a control branch). The exponential decay always follows
    the global step.
    """
    o = cfg.optim
    since = step
    if o.restart_warmup_at_distill and step >= plan.restart_step:
        since = step - plan.restart_step
    warm = 1.0 if o.warmup_steps <= 0 else min(1.0, (since + 1) / o.warmup_steps)
    return o.lr * warm * o.decay_rate ** (step / o.decay_steps)
