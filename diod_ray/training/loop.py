"""The per-worker training loop run by Ray Train: burn-in, then teacher-student distillation.

Everything that decides *what* happens (phase, learning rate, when the teacher is made) is a
function of the global step restored from the checkpoint, never of how long this process lived,
so a run killed anywhere resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from diod_ray.config import Config, from_dict
from diod_ray.teacher import keep_rate, teacher_horizon, unwrap
from diod_ray.teacher_diagnostics import TeacherActivity
from diod_ray.training.console import EpochLine, quiet_ray_data_console, quiet_ray_train_console
from diod_ray.training.eval_in_run import evaluate_in_run, measure_gates_in_run
from diod_ray.training.schedule import BURN_IN, DISTILL, Plan, learning_rate, make_plan
from diod_ray.training.state import TrainState, keep_burn_in_checkpoint, restore, save_checkpoint
from diod_ray.training.step import train_step
from diod_ray.training.tensorboard import Logger

# ============================================================================================
# 1. Small helpers
# ============================================================================================


def use_worker_cores(cfg: Config) -> None:
    """torch's intra-op threads = the CPUs this worker holds (``run.cpus_per_worker``, at least
    one), so Ray Data's decode/augment tasks get the rest of the node instead of fighting torch
    for it (docs/performance.md, "Cores"); ``run.torch_threads`` > 0 sets the count instead."""
    torch.set_num_threads(cfg.run.torch_threads or max(1, int(cfg.run.cpus_per_worker)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_and_determinism(cfg: Config, device: torch.device, seed: int) -> None:
    """Seed Python, NumPy and torch; ``run.deterministic`` also turns on Ray's
    ``enable_reproducibility`` (cudnn.benchmark off, ``torch.use_deterministic_algorithms``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8``); otherwise a GPU keeps cudnn.benchmark on. The data
    path seeds itself (diod_ray/data/streaming/order.py); docs/performance.md, "Deterministic runs".

    ``warn_only``: an op without a deterministic CUDA kernel warns, naming itself, instead of
    failing the run hours in (none known since eq. (2) sums with scatter_add_; perf doc §6)."""
    if cfg.run.deterministic:
        ray.train.torch.enable_reproducibility(seed % 2**32)
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(seed)


def prefixed(prefix: str, summary: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}


def ranks_param_spread(model: torch.nn.Module) -> float:
    """Largest difference of any weight between DDP ranks (0.0 when the replicas agree)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().float().flatten() for p in unwrap(model).parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max())


def _iter_batches(
    cfg: Config, epoch: int, steps: int, skip: int, device: torch.device, rank: int, world: int
):
    """Batches ``skip``..``steps``-1 of ``epoch`` for this rank, from the rank's one Dataset for
    the rest of the run (diod_ray/data/streaming/batches.py, ``train_batches``): built at the first
    epoch this worker runs and continued at every later one, so the stream is a function of (data
    seed, epoch, rank) and not of Ray Data's task timing, with no per-epoch start-up."""
    from diod_ray.data.streaming.batches import train_batches

    end = make_plan(cfg, steps).total_epochs
    return train_batches(
        cfg, epoch, steps, device, rank=rank, world=world, skip=skip, end_epoch=end
    )


def _inject_fault(cfg: Config) -> None:
    """Fault-tolerance testing knob (run.fault_injection_step): fail once, before any resume."""
    if cfg.run.num_workers > 0:
        # Train V2's controller collects a worker's reports by polling it: a report still queued
        # in the worker dies with it, so the fault waits for the last one to be collected (the
        # data path no longer pauses at epoch ends, so a fault one step after a checkpoint
        # came before the controller's next poll): 2.5 polls (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S)
        time.sleep(max(1.0, 2.5 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))))
        os._exit(1)  # a real worker-process death: Ray Train restarts the worker group
    raise RuntimeError(f"injected fault at step {cfg.run.fault_injection_step}")


# ============================================================================================
# 2. The loop: set up the worker, then epochs of named steps, then the final report
# ============================================================================================


def train_loop_per_worker(config: dict[str, Any]) -> None:
    # -- 1. the config, the step plan and this worker's place ----------------------------------
    cfg = from_dict(config["cfg"])
    keep_rate(cfg)  # a bad distill.ema / ema_half_life_steps fails here, not after burn-in
    plan = make_plan(cfg, int(config["steps_per_epoch"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.run.use_gpu else torch.device("cpu")
    seed_and_determinism(cfg, device, cfg.run.seed + 1000 * rank)
    use_worker_cores(cfg)
    quiet_ray_data_console()  # this worker runs its datasets; their blocks go to Ray's logs
    quiet_ray_train_console(cfg.run.ray_train_log_level)

    # -- 2. state: fresh, resumed, or branched -------------------------------------------------
    ts = TrainState(cfg, device)
    how = restore(ts)
    if world > 1:
        ts.student = ray.train.torch.prepare_model(ts.student, move_to_device=False)
    log = Logger(cfg, rank)
    announce(cfg, plan, how, rank)
    line = EpochLine(cfg.run.name, plan.total_epochs, plan.total_steps, ts.step)
    run = WorkerRun(plan, rank, world, log, line, last_ckpt_step=ts.step)

    # -- 3. epochs: the switch to the teacher, the optimiser restart, batches, the epoch's end --
    while ts.step < plan.total_steps:
        if plan.phase(ts.step) == DISTILL and ts.teacher is None:
            start_distillation(ts, log, rank)
        maybe_restart_optimizer(ts, plan)
        run_epoch(ts, run)
        end_of_epoch(ts, run)  # the last epoch's report is the final one, below

    # -- 4. the end: evaluate and report the final checkpoint ---------------------------------
    final_report(ts, run)


@dataclass
class WorkerRun:
    """A worker's run besides its TrainState: plan, place, logger, what epochs hand on."""

    plan: Plan
    rank: int
    world: int
    log: Logger
    line: EpochLine
    last_ckpt_step: int  # the step of the last report that carried a checkpoint
    last_val: dict[str, float] = field(default_factory=dict)  # repeated in the final report
    activity: TeacherActivity = field(default_factory=TeacherActivity)  # this epoch's teacher


def announce(cfg: Config, plan: Plan, how: str, rank: int) -> None:
    """Rank 0's first lines: how the state was made, the plan, and a too-short distillation."""
    if rank != 0:
        return
    print(f"[diod_ray] {cfg.run.name}: {how}; {plan}", flush=True)
    if short := teacher_horizon(cfg, plan.total_steps - plan.burn_in_end):
        print(f"[diod_ray] warning: {short}", flush=True)


# ============================================================================================
# 3. The steps of an epoch: the switch to the teacher, the optimiser restart, the batches
# ============================================================================================


def start_distillation(ts: TrainState, log: Logger, rank: int) -> None:
    """The end of burn-in (a distillation step without a teacher): rank 0 keeps the burn-in model
    for good (``kept/burn_in_end``), every rank duplicates the student into the teacher and
    measures both (``burn_in/*``, the teacher's pseudo-labels as ``burn_in/teacher_*``) and the
    preconditions (``gates/*``). On resume it keeps and makes the teacher again (the checkpoint
    at the switch holds none) but never measures what ``ts.metrics`` already holds."""
    if rank == 0:
        keep_burn_in_checkpoint(ts, "end")
        ts.metrics["burn_in_kept"] = 1.0
    ts.make_teacher()
    if ts.cfg.run.evaluate_at_end and "burn_in/f1" not in ts.metrics:  # every rank
        ts.metrics.update(prefixed("burn_in", evaluate_in_run(ts)))
        log.scalars(ts.metrics, ts.step)
    measure_gates_at_switch(ts, log)


def measure_gates_at_switch(ts: TrainState, log: Logger) -> None:
    """The preconditions of a test of DIOD's claim (diod_ray/preconditions.py, issue 21), once per
    run at the switch, on all of the val split: ``gates/*`` into ts.metrics (every later report,
    the final JSON line) and TensorBoard; rank 0 prints a line per gate and the verdict. Every
    rank calls it; measured with the other end-of-burn-in evaluations (``run.evaluate_at_end``)."""
    if not ts.cfg.run.evaluate_at_end or "gates/testable" in ts.metrics:
        return
    gates = measure_gates_in_run(ts, dataset="val")
    ts.metrics.update(gates)
    log.scalars(gates, ts.step)


def maybe_restart_optimizer(ts: TrainState, plan: Plan) -> bool:
    """A fresh Adam at :attr:`Plan.restart_step` (``optim.restart_optimizer_at_distill``), after
    the kept burn-in checkpoint (burn-in's Adam state) was written; a run resumed at that step
    restarts it again, the same way. True when it restarted."""
    if ts.step == plan.restart_step > 0 and ts.cfg.optim.restart_optimizer_at_distill:
        ts.restart_optimizer()
        return True
    return False


def run_epoch(ts: TrainState, run: WorkerRun) -> None:
    """The rest of the step's epoch: a training step per batch, its scalars and pictures, the
    fault-injection knob. A resumed run rebuilds the epoch's stream and skips the batches done,
    so the rest of the epoch is what the uninterrupted run saw."""
    cfg, plan = ts.cfg, run.plan
    epoch = plan.epoch(ts.step)
    done = ts.step % plan.steps_per_epoch  # batches of this epoch already consumed (resume)
    bg = unwrap(ts.student).bg_index
    t_wait = time.perf_counter()
    stream = _iter_batches(cfg, epoch, plan.steps_per_epoch, done, ts.device, run.rank, run.world)
    for batch in iter(stream):
        wait = time.perf_counter() - t_wait
        phase = plan.phase(ts.step)
        res, out, teacher_out = train_step(ts, batch, plan)
        if teacher_out is not None:
            run.activity.add_step(res.stats)
        clips = batch["strong"].shape[0] * run.world
        run.log.add(res, clips, wait, learning_rate(cfg, ts.step - 1, plan), phase)
        if ts.step % cfg.run.log_every_steps == 0:
            run.log.flush(ts.step)
        if cfg.run.image_every_steps > 0 and ts.step % cfg.run.image_every_steps == 0:
            run.log.image(ts.step, batch, out, teacher_out, cfg, bg)
        if cfg.run.fault_injection_step == ts.step and ts.resumed_from_step < 0:
            _inject_fault(cfg)
        t_wait = time.perf_counter()


# ============================================================================================
# 4. The end of an epoch: kept checkpoints, teacher statistics, validation, line, report
# ============================================================================================


def end_of_epoch(ts: TrainState, run: WorkerRun) -> None:
    """After an epoch: its kept burn-in checkpoint, the teacher's statistics (distillation),
    validation (``run.val_every_epochs``), rank 0's console line, and the report, with a
    checkpoint when due. The last epoch reports nothing: :func:`final_report` does."""
    plan = run.plan
    epoch = plan.epoch(ts.step)
    avg = run.log.flush(ts.step)
    if run.rank == 0:
        keep_epoch_checkpoint(ts, plan, epoch)
    due = checkpoint_due(ts.cfg, plan, ts.step, run.last_ckpt_step)
    metrics = epoch_metrics(plan, ts.step, avg)
    teacher: dict[str, float] = {}
    if plan.phase(ts.step - 1) == DISTILL:
        teacher = epoch_teacher_summary(ts, run.activity, epoch, run.rank)
        run.activity = TeacherActivity()
        ts.metrics.update(teacher)  # in every later report, and the final JSON line
        run.log.scalars(teacher, ts.step)
    if ts.cfg.run.val_every_epochs > 0 and epoch % ts.cfg.run.val_every_epochs == 0:
        val = validate(ts, run.log)
        metrics.update(val)
        run.last_val = val if ts.step >= plan.total_steps else {}
    if run.rank == 0:
        phase = "burn-in" if metrics["phase"] == 0 else "distill"
        val_f1 = metrics.get("val/f1")
        text = run.line.format(
            phase=phase, epoch=epoch, step=ts.step, avg=avg, teacher=teacher, val_f1=val_f1
        )
        print(text, flush=True)
    if ts.step >= plan.total_steps:
        return
    if due:
        run.log.sync_tensorboard()  # events reach run.storage_path with every checkpoint
    report(ts, run.rank, metrics, with_checkpoint=due)
    if due:
        run.last_ckpt_step = ts.step


def keep_epoch_checkpoint(ts: TrainState, plan: Plan, epoch: int) -> str | None:
    """Rank 0, at the end of a burn-in epoch named in ``schedule.keep_burn_in_epochs``: that
    epoch's checkpoint kept for good (the sweeps branch from it). Returns its URI, else None."""
    if epoch in set(ts.cfg.schedule.keep_burn_in_epochs) and ts.step <= plan.burn_in_end:
        return keep_burn_in_checkpoint(ts, epoch)
    return None


def checkpoint_due(cfg: Config, plan: Plan, step: int, last_ckpt_step: int) -> bool:
    """An epoch's report carries a checkpoint every ``run.checkpoint_every_steps`` steps (counted
    from the last one) and always at the switch to distillation."""
    return step - last_ckpt_step >= cfg.run.checkpoint_every_steps or step == plan.burn_in_end


def epoch_metrics(plan: Plan, step: int, avg: dict[str, float]) -> dict[str, Any]:
    """An epoch's own report keys: the epoch just finished, its phase (0 burn-in, 1 distillation)
    and its mean loss (rank 0's ``loss/total``; NaN on the other ranks, whose logger is off)."""
    return {
        "epoch": plan.epoch(step),
        "phase": 0 if plan.phase(step - 1) == BURN_IN else 1,
        "loss": float(avg.get("loss/total", float("nan"))),
    }


def validate(ts: TrainState, log: Logger) -> dict[str, float]:
    """``val/*`` on the first ``run.val_clips`` clips of the val split (every rank its share)."""
    val = prefixed("val", evaluate_in_run(ts, max_clips=ts.cfg.run.val_clips, dataset="val"))
    log.scalars(val, ts.step)
    return val


def epoch_teacher_summary(
    ts: TrainState, activity: TeacherActivity, epoch: int, rank: int
) -> dict[str, float]:
    """One distillation epoch's teacher activity, summed over the ranks (every rank calls it), as
    ``teacher/*`` keys: kept_per_frame, frames_with_kept, kept_area, motion_kept_share, and over the
    run so far min_kept_per_frame and epochs_without_candidates. Rank 0 prints one warning line
    when the epoch kept no candidate at all (the teacher term of eq. 5 was then zero)."""
    total = activity.all_reduce(ts.device)
    s = total.summary()
    rates = ("kept_per_frame", "frames_with_kept", "kept_area", "motion_kept_share")
    out = {f"teacher/{k}": s[k] for k in rates}
    kept = s["kept_per_frame"] if total.frames > 0 else 0.0
    prev_min = ts.metrics.get("teacher/min_kept_per_frame", float("inf"))
    out["teacher/min_kept_per_frame"] = min(prev_min, kept)
    idle = ts.metrics.get("teacher/epochs_without_candidates", 0.0) + (total.kept == 0)
    out["teacher/epochs_without_candidates"] = float(idle)
    if total.kept == 0 and rank == 0:
        d = ts.cfg.distill
        print(
            f"[diod_ray] warning: distillation epoch {epoch} kept no teacher candidate in "
            f"{int(total.frames)} frames (distill.p={d.p}, distill.score_source={d.score_source}): "
            f"the teacher term of eq. 5 was zero (docs/teacher.md)",
            flush=True,
        )
    return out


# ============================================================================================
# 5. Reports: every epoch's, and the final one with the last checkpoint
# ============================================================================================


def report_metrics(ts: TrainState, metrics: dict[str, Any]) -> dict[str, Any]:
    """The caller's metrics, the run's (``ts.metrics``), the step, and ``distill_epoch``: epochs
    since the start of distillation (0 in burn-in), the clock of the sweeps' ASHA scheduler, so
    its rungs fall inside distillation (docs/sweeps.md)."""
    metrics = {**metrics, **ts.metrics, "step": ts.step}
    if isinstance(metrics.get("epoch"), (int, float)):
        metrics["distill_epoch"] = max(0, int(metrics["epoch"]) - ts.cfg.schedule.burn_in_epochs)
    return metrics


def report(ts: TrainState, rank: int, metrics: dict[str, Any], with_checkpoint: bool) -> None:
    """Every rank calls this the same number of times; only rank 0 attaches a checkpoint."""
    metrics = report_metrics(ts, metrics)
    if with_checkpoint and rank == 0:
        with tempfile.TemporaryDirectory(prefix="diod-ckpt-") as d:
            save_checkpoint(d, ts.to_state())
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics, checkpoint=None)


def final_report(ts: TrainState, run: WorkerRun) -> None:
    """The end of the run: the final evaluation (once: a run resumed after it skips it), the DDP
    replicas' spread, the logs closed and synced, and the report with the last checkpoint."""
    final_evaluation(ts, run.plan, run.log)
    sync = {"ddp/max_param_diff": ranks_param_spread(ts.student)} if run.world > 1 else {}
    run.log.close()
    run.log.sync_tensorboard()
    metrics = final_metrics(run.plan, ts.resumed_from_step, run.last_val, sync)
    report(ts, run.rank, metrics, with_checkpoint=True)


def final_evaluation(ts: TrainState, plan: Plan, log: Logger) -> None:
    """``final/*`` on the test split (``run.evaluate_at_end``; every rank its share), and the same
    numbers as ``burn_in/*`` for a run without distillation."""
    if not ts.cfg.run.evaluate_at_end or "final/f1" in ts.metrics:
        return
    final = evaluate_in_run(ts)
    if plan.distill_epochs == 0 and "burn_in/f1" not in ts.metrics:
        ts.metrics.update(prefixed("burn_in", final))
    ts.metrics.update(prefixed("final", final))
    log.scalars(ts.metrics, ts.step)


def final_metrics(plan: Plan, resumed_from_step: int, last_val: dict, sync: dict) -> dict:
    """The final report's own keys: last epoch, phase, ``run_done``, where it resumed (-1: it did
    not), the last epoch's validation (ASHA's metric) if it ran one, the DDP replicas' spread."""
    return {
        "epoch": plan.total_epochs,
        "phase": 0 if plan.distill_epochs == 0 else 1,
        "run_done": 1,
        "resumed_from_step": resumed_from_step,
        **last_val,
        **sync,
    }
