"""Phase and learning rate are functions of the global step."""

from __future__ import annotations

import pytest

from diod_ray.config import apply_overrides, load_preset
from diod_ray.training.schedule import BURN_IN, DISTILL, learning_rate, make_plan


def test_phase_is_derived_from_the_step():
    cfg = apply_overrides(
        load_preset("smoke"), {"schedule.burn_in_epochs": 2, "schedule.distill_epochs": 3}
    )
    plan = make_plan(cfg, steps_per_epoch=4)
    assert plan.burn_in_end == 8 and plan.total_steps == 20 and plan.total_epochs == 5
    assert [plan.phase(s) for s in (0, 7, 8, 19)] == [BURN_IN, BURN_IN, DISTILL, DISTILL]
    with pytest.raises(ValueError):
        make_plan(cfg, 0)


def test_reference_lr_schedule_and_warmup_restart_option():
    cfg = apply_overrides(
        load_preset("smoke"),
        {
            "optim.lr": 1.0,
            "optim.warmup_steps": 10,
            "optim.decay_rate": 0.5,
            "optim.decay_steps": 100,
            "schedule.burn_in_epochs": 5,
            "schedule.distill_epochs": 5,
        },
    )
    plan = make_plan(cfg, 10)  # burn-in ends at step 50
    assert learning_rate(cfg, 4, plan) == pytest.approx(0.5 * 0.5**0.04)
    assert learning_rate(cfg, 100, plan) == pytest.approx(0.5)
    # the default restarts the warm-up at distillation, as the authors' relaunch does
    assert learning_rate(cfg, 50, plan) == pytest.approx(0.1 * 0.5**0.5)
    running = apply_overrides(cfg, {"optim.restart_warmup_at_distill": False})
    assert learning_rate(running, 50, plan) == pytest.approx(0.5**0.5)  # warmup not restarted
    # a control branch that starts at epoch 3 restarts there, the same way
    branch = apply_overrides(cfg, {"optim.restart_at_epoch": 3})
    bplan = make_plan(branch, 10)
    assert bplan.restart_step == 30
    assert learning_rate(branch, 30, bplan) == pytest.approx(0.1 * 0.5**0.3)
    assert learning_rate(branch, 50, bplan) == pytest.approx(0.5**0.5)  # 20 steps in: warm
