"""The training loop's named steps, each alone and outside Ray Train (diod_ray/training/loop.py):
the switch to the teacher and its resume guards, the optimiser restart, the epoch's end (kept
checkpoints, teacher statistics, the console line) and the keys of every report."""

from __future__ import annotations

import math

import torch

from diod_ray.config import apply_overrides, load_preset
from diod_ray.training.console import EpochLine
from diod_ray.training.loop import (
    WorkerRun,
    checkpoint_due,
    end_of_epoch,
    epoch_metrics,
    final_evaluation,
    final_metrics,
    keep_epoch_checkpoint,
    maybe_restart_optimizer,
    report_metrics,
    start_distillation,
    use_worker_cores,
)
from diod_ray.training.schedule import make_plan
from diod_ray.training.state import TrainState, burn_in_end_uri, read_kept_state
from diod_ray.training.tensorboard import Logger

CPU = torch.device("cpu")


def _cfg(tmp_path, **overrides):
    """Smoke model, 2 burn-in epochs and 1 distillation epoch of 2 steps (switch at step 4), its
    run under ``tmp_path``, no TensorBoard files."""
    base = {
        "run.storage_path": str(tmp_path),
        "run.name": "steps",
        "run.tensorboard": False,
        "schedule.burn_in_epochs": 2,
        "schedule.distill_epochs": 1,
        "schedule.steps_per_epoch": 2,
    }
    return apply_overrides(load_preset("smoke"), {**base, **overrides})


def _adam_step(ts: TrainState) -> None:
    for p in ts.student.parameters():
        p.grad = torch.ones_like(p)
    ts.optimizer.step()


def test_optimizer_restarts_at_the_restart_step_only(tmp_path):
    cfg = _cfg(tmp_path)
    plan = make_plan(cfg, 2)
    assert plan.restart_step == 4
    ts = TrainState(cfg, CPU)
    _adam_step(ts)
    before = ts.optimizer
    for step in (0, 3, 5):
        ts.step = step
        assert not maybe_restart_optimizer(ts, plan)
    assert ts.optimizer is before and ts.optimizer.state  # burn-in's moments kept
    ts.step = 4
    assert maybe_restart_optimizer(ts, plan)
    assert ts.optimizer is not before and not ts.optimizer.state  # a fresh Adam
    off = TrainState(_cfg(tmp_path, **{"optim.restart_optimizer_at_distill": False}), CPU)
    off.step = 4
    assert not maybe_restart_optimizer(off, plan)
    # a run without burn-in (restart step 0) has no burn-in optimiser to restart
    no_burn = _cfg(tmp_path, **{"schedule.burn_in_epochs": 0})
    ts0 = TrainState(no_burn, CPU)
    assert not maybe_restart_optimizer(ts0, make_plan(no_burn, 2))


def test_start_distillation_keeps_burn_in_and_makes_the_teacher(tmp_path):
    cfg = _cfg(tmp_path, **{"run.evaluate_at_end": False})
    ts = TrainState(cfg, CPU)
    ts.step = 4
    start_distillation(ts, Logger(cfg, 0), rank=0)
    assert ts.teacher is not None
    assert ts.metrics == {"burn_in_kept": 1.0}  # nothing measured without run.evaluate_at_end
    kept = read_kept_state(burn_in_end_uri(cfg), cfg, timeout_s=1)  # published, marker last
    assert kept["step"] == 4 and kept["teacher"] is None  # the burn-in model, before the teacher
    # another rank makes its teacher but writes nothing
    other = TrainState(_cfg(tmp_path / "r1", **{"run.evaluate_at_end": False}), CPU)
    other.step = 4
    start_distillation(other, Logger(other.cfg, 1), rank=1)
    assert other.teacher is not None and other.metrics == {}
    assert not (tmp_path / "r1" / "steps" / "kept").exists()


def test_start_distillation_on_resume_does_not_measure_again(tmp_path):
    """A run resumed after the switch's measurements (they are in ts.metrics) keeps and makes the
    teacher again and measures nothing (measuring needs Ray Train's datasets, which this process
    has not got). The other branch, measuring at a fresh switch, runs in every Ray smoke run
    (tests/training/test_train.py, tests/evaluation/test_preconditions.py)."""
    cfg = _cfg(tmp_path)
    assert cfg.run.evaluate_at_end
    ts = TrainState(cfg, CPU)
    ts.step = 4
    measured = {"burn_in/f1": 0.25, "gates/testable": 1.0}
    ts.metrics = dict(measured)
    start_distillation(ts, Logger(cfg, 1), rank=1)
    assert ts.teacher is not None and ts.metrics == measured


def test_checkpoint_due_every_n_steps_and_at_the_switch(tmp_path):
    cfg = _cfg(tmp_path, **{"run.checkpoint_every_steps": 3, "schedule.burn_in_epochs": 3})
    plan = make_plan(cfg, 2)  # switch at step 6
    assert not checkpoint_due(cfg, plan, step=2, last_ckpt_step=0)
    assert checkpoint_due(cfg, plan, step=4, last_ckpt_step=0)
    assert checkpoint_due(cfg, plan, step=6, last_ckpt_step=4)  # the switch, whatever the count
    assert not checkpoint_due(cfg, plan, step=8, last_ckpt_step=6)


def test_epoch_metrics_name_the_finished_epoch_and_its_phase(tmp_path):
    plan = make_plan(_cfg(tmp_path), 2)
    assert epoch_metrics(plan, 4, {"loss/total": 0.5}) == {"epoch": 2, "phase": 0, "loss": 0.5}
    m = epoch_metrics(plan, 6, {})  # a rank whose logger is off
    assert m["epoch"] == 3 and m["phase"] == 1 and math.isnan(m["loss"])


def test_report_metrics_carry_the_run_the_step_and_the_distill_epoch(tmp_path):
    ts = TrainState(_cfg(tmp_path), CPU)
    ts.step, ts.metrics = 6, {"burn_in/f1": 0.5, "teacher/kept_per_frame": 1.5}
    m = report_metrics(ts, {"epoch": 3, "loss": 0.1})
    assert m == {
        "epoch": 3,
        "loss": 0.1,
        "burn_in/f1": 0.5,
        "teacher/kept_per_frame": 1.5,
        "step": 6,
        "distill_epoch": 1,
    }
    assert report_metrics(ts, {"epoch": 1})["distill_epoch"] == 0  # burn-in
    assert "distill_epoch" not in report_metrics(ts, {})


def test_final_metrics_and_evaluation_once(tmp_path):
    cfg = _cfg(tmp_path)
    plan = make_plan(cfg, 2)
    val, sync = {"val/f1": 0.3}, {"ddp/max_param_diff": 0.0}
    assert final_metrics(plan, -1, val, sync) == {
        "epoch": 3,
        "phase": 1,
        "run_done": 1,
        "resumed_from_step": -1,
        "val/f1": 0.3,
        "ddp/max_param_diff": 0.0,
    }
    burn_only = make_plan(_cfg(tmp_path, **{"schedule.distill_epochs": 0}), 2)
    assert final_metrics(burn_only, 4, {}, {})["phase"] == 0
    # a run resumed after its final evaluation does not evaluate again (it needs Train to)
    ts = TrainState(cfg, CPU)
    ts.metrics = {"final/f1": 0.4}
    final_evaluation(ts, plan, Logger(cfg, 1))
    assert ts.metrics == {"final/f1": 0.4}


def test_named_burn_in_epochs_are_kept(tmp_path):
    cfg = _cfg(tmp_path, **{"schedule.keep_burn_in_epochs": [1, 3]})
    plan = make_plan(cfg, 2)
    ts = TrainState(cfg, CPU)
    ts.step = 2
    uri = keep_epoch_checkpoint(ts, plan, 1)
    assert uri is not None and uri.endswith("/kept/burn_in_epoch_1")
    assert read_kept_state(uri, cfg, timeout_s=1)["step"] == 2
    ts.step = 4
    assert keep_epoch_checkpoint(ts, plan, 2) is None  # not named
    ts.step = 6
    assert keep_epoch_checkpoint(ts, plan, 3) is None  # named, but a distillation epoch


def test_last_epoch_end_sums_the_teacher_and_prints_the_line(tmp_path, capsys):
    """The run's last epoch: teacher statistics into ts.metrics, the activity reset, rank 0's
    console line; no report here (the final report carries the checkpoint), so no Train needed."""
    cfg = _cfg(tmp_path)
    plan = make_plan(cfg, 2)
    ts = TrainState(cfg, CPU)
    ts.step = plan.total_steps
    log = Logger(cfg, 0)
    line = EpochLine(cfg.run.name, plan.total_epochs, plan.total_steps, 4)
    run = WorkerRun(plan, 0, 1, log, line, last_ckpt_step=4)
    run.activity.add_step({"frames": 6, "candidates_kept": 3, "frames_with_kept_share": 0.5})
    before = run.activity
    end_of_epoch(ts, run)
    assert ts.metrics["teacher/kept_per_frame"] == 0.5
    assert ts.metrics["teacher/epochs_without_candidates"] == 0
    assert run.activity is not before and run.activity.frames == 0
    assert run.last_ckpt_step == 4 and run.last_val == {}
    out = capsys.readouterr().out
    assert "[steps] distill epoch 3/3 step 6" in out and "teacher 0.50 kept/frame" in out


def test_torch_threads_follow_the_worker_cpus_unless_set():
    """torch's threads = the CPUs the worker holds; run.torch_threads overrides (the synthetic
    preset, a 2-core laptop: 2 threads beside the core Ray Data reserves)."""
    before = torch.get_num_threads()
    try:
        use_worker_cores(apply_overrides(load_preset("smoke"), {"run.cpus_per_worker": 1.0}))
        assert torch.get_num_threads() == 1
        use_worker_cores(load_preset("synthetic"))
        assert torch.get_num_threads() == 2
        cfg = apply_overrides(load_preset("synthetic"), {"run.torch_threads": 1})
        use_worker_cores(cfg)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
