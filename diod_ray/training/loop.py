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
from diod_ray.training.schedule import BURN_IN, DISTILL, learning_rate, make_plan
from diod_ray.training.state import TrainState, keep_burn_in_checkpoint, restore, save_checkpoint
from diod_ray.training.step import train_step
from diod_ray.training.tensorboard import Logger

# ============================================================================================
# 1. Small helpers
# ============================================================================================


def use_worker_cores(cfg: Config) -> None:
    """torch's intra-op threads = the CPUs this worker holds (``run.cpus_per_worker``, at least
    one), so Ray Data's decode/augment tasks get the rest of the node instead of fighting torch
    for it (docs/performance.md, "Cores")."""
    torch.set_num_threads(max(1, int(cfg.run.cpus_per_worker)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_and_determinism(cfg: Config, device: torch.device, seed: int) -> None:
    """Seed Python, NumPy and torch; ``run.deterministic`` also turns on Ray's
    ``enable_reproducibility`` (cudnn.benchmark off, ``torch.use_deterministic_algorithms``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8``); otherwise a GPU keeps cudnn.benchmark on. The data
    path seeds itself (diod_ray/data/order.py); docs/performance.md, "Deterministic runs".

    ``warn_only``: an op without a deterministic CUDA kernel (e.g. ``bincount`` with weights)
    warns, naming itself, instead of failing the run hours in."""
    if cfg.run.deterministic:
        ray.train.torch.enable_reproducibility(seed % 2**32)
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(seed)


def prefixed(prefix: str, summary: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}


# ============================================================================================
# 2. The loop
# ============================================================================================


def report(ts: TrainState, rank: int, metrics: dict[str, Any], with_checkpoint: bool) -> None:
    """Every rank calls this the same number of times; only rank 0 attaches a checkpoint.

    ``distill_epoch``: epochs since the start of distillation (0 during burn-in), the clock of
    the sweeps' ASHA scheduler, so its rungs fall inside distillation (docs/sweeps.md)."""
    metrics = {**metrics, **ts.metrics, "step": ts.step}
    if isinstance(metrics.get("epoch"), (int, float)):
        metrics["distill_epoch"] = max(0, int(metrics["epoch"]) - ts.cfg.schedule.burn_in_epochs)
    if with_checkpoint and rank == 0:
        with tempfile.TemporaryDirectory(prefix="diod-ckpt-") as d:
            save_checkpoint(d, ts.to_state())
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics, checkpoint=None)


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


def train_loop_per_worker(config: dict[str, Any]) -> None:
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

    # -- 1. state: fresh, resumed, or branched -------------------------------------------------
    ts = TrainState(cfg, device)
    how = restore(ts)
    if world > 1:
        ts.student = ray.train.torch.prepare_model(ts.student, move_to_device=False)
    log = Logger(cfg, rank)
    if rank == 0:
        print(f"[diod_ray] {cfg.run.name}: {how}; {plan}", flush=True)
        short = teacher_horizon(cfg, plan.total_steps - plan.burn_in_end)
        if short:
            print(f"[diod_ray] warning: {short}", flush=True)
    line = EpochLine(cfg.run.name, plan.total_epochs, plan.total_steps, ts.step)
    last_ckpt_step = ts.step
    last_val: dict[str, float] = {}  # the last epoch's val/*, repeated in the final report
    bg = unwrap(ts.student).bg_index
    keep = set(cfg.schedule.keep_burn_in_epochs)
    activity = TeacherActivity()  # this epoch's teacher pseudo-labels (distillation steps)

    # -- 2. epochs -----------------------------------------------------------------------------
    while ts.step < plan.total_steps:
        epoch = plan.epoch(ts.step)
        if plan.phase(ts.step) == DISTILL and ts.teacher is None:
            # end of burn-in: keep it for good, duplicate the student into the teacher, measure
            # both (the teacher's pseudo-labels at the switch: burn_in/teacher_*)
            if rank == 0:
                keep_burn_in_checkpoint(ts, "end")
                ts.metrics["burn_in_kept"] = 1.0
            ts.make_teacher()
            if cfg.run.evaluate_at_end and "burn_in/f1" not in ts.metrics:  # every rank
                ts.metrics.update(prefixed("burn_in", evaluate_in_run(ts)))
                log.scalars(ts.metrics, ts.step)
            measure_gates_at_switch(ts, log)
        if ts.step == plan.restart_step > 0 and cfg.optim.restart_optimizer_at_distill:
            # after the kept burn-in checkpoint (which holds burn-in's Adam state) was written;
            # a run resumed at this step restarts it again, the same way
            ts.restart_optimizer()
        # batches of this epoch already consumed (resume): the epoch's stream is rebuilt and
        # skipped to there, so the rest of the epoch is what the uninterrupted run saw
        done = ts.step % plan.steps_per_epoch
        t_wait = time.perf_counter()
        batches = iter(_iter_batches(cfg, epoch, plan.steps_per_epoch, done, device, rank, world))
        for batch in batches:
            wait = time.perf_counter() - t_wait
            phase = plan.phase(ts.step)
            res, out, teacher_out = train_step(ts, batch, plan)
            if teacher_out is not None:
                activity.add_step(res.stats)
            log.add(
                res,
                batch["strong"].shape[0] * world,
                wait,
                learning_rate(cfg, ts.step - 1, plan),
                phase,
            )
            if ts.step % cfg.run.log_every_steps == 0:
                log.flush(ts.step)
            if cfg.run.image_every_steps > 0 and ts.step % cfg.run.image_every_steps == 0:
                log.image(ts.step, batch, out, teacher_out, cfg, bg)
            if cfg.run.fault_injection_step == ts.step and ts.resumed_from_step < 0:
                _inject_fault(cfg)
            t_wait = time.perf_counter()
        epoch_done = plan.epoch(ts.step)
        avg = log.flush(ts.step)
        if epoch_done in keep and ts.step <= plan.burn_in_end and rank == 0:
            keep_burn_in_checkpoint(ts, epoch_done)
        at_switch = ts.step == plan.burn_in_end
        due = ts.step - last_ckpt_step >= cfg.run.checkpoint_every_steps or at_switch
        metrics = {
            "epoch": epoch_done,
            "phase": 0 if plan.phase(ts.step - 1) == BURN_IN else 1,
            "loss": float(avg.get("loss/total", float("nan"))),
        }
        teacher: dict[str, float] = {}
        if plan.phase(ts.step - 1) == DISTILL:
            teacher = epoch_teacher_summary(ts, activity, epoch_done, rank)
            activity = TeacherActivity()
            ts.metrics.update(teacher)  # in every later report, and the final JSON line
            log.scalars(teacher, ts.step)
        if cfg.run.val_every_epochs > 0 and epoch_done % cfg.run.val_every_epochs == 0:
            val = prefixed("val", evaluate_in_run(ts, max_clips=cfg.run.val_clips, dataset="val"))
            metrics.update(val)
            log.scalars(val, ts.step)
            last_val = val if ts.step >= plan.total_steps else {}
        if rank == 0:
            phase_name = "burn-in" if metrics["phase"] == 0 else "distill"
            text = line.format(
                phase=phase_name,
                epoch=epoch_done,
                step=ts.step,
                avg=avg,
                teacher=teacher,
                val_f1=metrics.get("val/f1"),
            )
            print(text, flush=True)
        if ts.step >= plan.total_steps:
            break  # the final report below carries the checkpoint
        if due:
            log.sync_tensorboard()  # events reach run.storage_path with every checkpoint
        report(ts, rank, metrics, with_checkpoint=due)
        if due:
            last_ckpt_step = ts.step

    # -- 3. the end: evaluate and report the final checkpoint ---------------------------------
    if cfg.run.evaluate_at_end and "final/f1" not in ts.metrics:  # every rank: its share
        final = evaluate_in_run(ts)
        if plan.distill_epochs == 0 and "burn_in/f1" not in ts.metrics:
            ts.metrics.update(prefixed("burn_in", final))
        ts.metrics.update(prefixed("final", final))
        log.scalars(ts.metrics, ts.step)
    sync = {"ddp/max_param_diff": ranks_param_spread(ts.student)} if world > 1 else {}
    log.close()
    log.sync_tensorboard()
    report(
        ts,
        rank,
        {
            "epoch": plan.total_epochs,
            "phase": 0 if plan.distill_epochs == 0 else 1,
            "run_done": 1,
            "resumed_from_step": ts.resumed_from_step,
            **last_val,  # the last epoch's validation (ASHA's metric), if it ran one
            **sync,
        },
        with_checkpoint=True,
    )


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
    the rest of the run (diod_ray/data/pipeline.py, ``train_batches``): built at the first epoch
    this worker runs and continued at every later one, so the stream is a function of (data seed,
    epoch, rank) and not of Ray Data's task timing, with no per-epoch start-up."""
    from diod_ray.data.pipeline import train_batches

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
        # came before the controller's next poll)
        time.sleep(5.0)
        os._exit(1)  # a real worker-process death: Ray Train restarts the worker group
    raise RuntimeError(f"injected fault at step {cfg.run.fault_injection_step}")
