"""The per-worker training loop run by Ray Train: burn-in, then teacher-student distillation.

Everything that decides *what* happens (phase, learning rate, when the teacher is made) is a
function of the global step restored from the checkpoint, never of how long this process lived,
so a run killed anywhere resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import tempfile
import time
from collections import defaultdict
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from diod_ray.checkpoint import (
    capture_rng,
    load_state,
    restore_rng,
    save_checkpoint,
)
from diod_ray.config import Config, from_dict, to_dict
from diod_ray.console import EpochLine, quiet_ray_data_console, quiet_ray_train_console
from diod_ray.data.order import data_seed
from diod_ray.schedule import BURN_IN, DISTILL, Plan, learning_rate, make_plan
from diod_ray.storage_paths import run_uri, upload_directory
from diod_ray.teacher import build_teacher, keep_rate, unwrap
from diod_ray.teacher_diagnostics import TeacherActivity

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


def prefixed(prefix: str, summary: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}


# ============================================================================================
# 2. State: build, restore, save
# ============================================================================================


class TrainState:
    """Student, optional teacher, optimiser, scaler and counters of one worker."""

    def __init__(self, cfg: Config, device: torch.device):
        from diod_ray.model import build_model

        self.cfg = cfg
        self.device = device
        self.student = build_model(cfg).to(device)
        if device.type == "cuda" and cfg.run.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr)
        use_scaler = device.type == "cuda" and cfg.run.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.teacher = None
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.resumed_from_step = -1

    # -- teacher ------------------------------------------------------------------------------
    def make_teacher(self) -> None:
        """Duplicate the student into the EMA teacher (end of burn-in, paper §3.3.1); frozen in
        offline pseudo-labelling mode."""
        self.teacher = build_teacher(self.student, self.cfg)

    # -- checkpoint ---------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "student": unwrap(self.student).state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "step": self.step,
            "phase": BURN_IN if self.teacher is None else DISTILL,
            "rng": capture_rng(),
            # the data stream is a function of (data seed, epoch, rank): the step fixes the
            # position, the seed is kept to check that a resume continues the same stream
            "data": {"seed": data_seed(self.cfg)},
            "config": to_dict(self.cfg),
            "metrics": dict(self.metrics),
        }

    def load(self, state: dict[str, Any], weights_only: bool = False) -> None:
        """Restore from a checkpoint state; ``weights_only`` keeps only the student weights."""
        unwrap(self.student).load_state_dict(state["student"])
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.metrics = dict(state.get("metrics") or {})
        if state.get("teacher") is not None:
            self.make_teacher()
            self.teacher.load_state_dict(state["teacher"])
        if state.get("rng") is not None:
            restore_rng(state["rng"])
        saved_seed = (state.get("data") or {}).get("seed")
        if saved_seed is not None and saved_seed != data_seed(self.cfg):
            print(
                f"[diod_ray] warning: resuming with data seed {data_seed(self.cfg)} but the "
                f"checkpoint was trained with {saved_seed}: the rest of the run sees another "
                "data stream than the uninterrupted run would have"
            )
        self.resumed_from_step = self.step


def restore(ts: TrainState) -> str:
    """Resume from this run's latest checkpoint (Ray Train's, under ``(storage_path, name)``,
    whatever ``run.num_workers`` was), else start from ``run.init_from``. Local mode
    (``run.num_workers=0``, a unit-test tool) keeps checkpoints in memory only: no resume."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            ts.load(load_state(d))
        return f"resumed at step {ts.step}"
    if ts.cfg.run.init_from:
        ts.load(load_state(ts.cfg.run.init_from), weights_only=ts.cfg.run.init_weights_only)
        # a branch is a new run: its own history starts here, burn-in metrics are re-measured
        ts.metrics = {}
        ts.resumed_from_step = -1
        return f"initialised from {ts.cfg.run.init_from} at step {ts.step}"
    return "fresh start"


# ============================================================================================
# 3. One optimisation step
# ============================================================================================


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
        res = burn_in_loss(out, batch["motion"], batch["strong"], cfg, bg)
    else:
        res = distill_loss(
            out, outputs_to_float(teacher_out), batch["motion"], batch["strong"], cfg, bg
        )
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


# ============================================================================================
# 4. Evaluation inside the run (rank 0)
# ============================================================================================


def rank_eval_batches(ts: TrainState, shard, max_clips: int = 0):
    """This rank's share of an evaluation pass: the pass (all clips, or the first ``max_clips``)
    cut into batches of ``run.eval_batch_size``, batch ``i`` evaluated by rank ``i % world``.

    The eval datasets are unsplit and read in stored order (train.build_trainer), so every rank
    sees the same batches and the shares are disjoint and complete; the counters are summed over
    the ranks afterwards (``all_reduce``), giving the numbers one process would."""
    from diod_ray.data.pipeline import iter_eval_batches

    cfg = ts.cfg
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    batches = iter_eval_batches(shard, cfg, cfg.run.eval_batch_size, ts.device)
    if max_clips > 0:
        batches = itertools.islice(batches, max(1, max_clips // cfg.run.eval_batch_size))
    return itertools.islice(batches, rank, None, world)


def sync_buffers_from_rank0(model: torch.nn.Module) -> None:
    """Every rank takes rank 0's buffers (BatchNorm running statistics) before it evaluates its
    share. DDP broadcasts them at the start of each training forward, then every rank updates its
    own copy on its own batch, so after a step the ranks' statistics differ; the checkpoint holds
    rank 0's, and so must every rank's share of the evaluation. No-op outside DDP."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


def evaluate_in_run(ts: TrainState, max_clips: int = 0, dataset: str = "test") -> dict[str, float]:
    """Metrics of the configured weights on ``dataset`` ("test", or "val": data.val_split, built
    by train.build_trainer) - all of it, or its first ``max_clips`` clips. Every rank calls it and
    evaluates its share (:func:`rank_eval_batches`); all ranks return the combined numbers."""
    from diod_ray.evaluate import evaluate_model

    cfg = ts.cfg
    shard = ray.train.get_dataset_shard(dataset)
    model = unwrap(ts.student)
    if cfg.run.eval_weights == "teacher" and ts.teacher is not None:
        model = ts.teacher.model
    sync_buffers_from_rank0(model)
    if ts.teacher is not None:
        sync_buffers_from_rank0(ts.teacher.model)
    was_training = model.training
    summary = evaluate_model(
        model,
        rank_eval_batches(ts, shard, max_clips),
        cfg,
        cfg.run.eval_protocol,
        all_reduce=True,
    )
    model.train(was_training)
    if ts.teacher is not None:
        summary.update(teacher_eval_summary(ts, shard, max_clips))
    return summary


def teacher_eval_summary(ts: TrainState, shard, max_clips: int = 0) -> dict[str, float]:
    """The teacher's pseudo-labels on the evaluation shard's clips with GT, as ``teacher_*`` keys:
    kept per frame, frames with a kept candidate, motion masks kept, precision, static cover
    (diod_ray/teacher_diagnostics.py, docs/teacher.md); each rank its share, summed."""
    from diod_ray.teacher_diagnostics import evaluate_teacher

    batches = rank_eval_batches(ts, shard, max_clips)
    summary = evaluate_teacher(ts.teacher, batches, ts.cfg, all_reduce=True)
    return {f"teacher_{k}": v for k, v in summary.items()}


# ============================================================================================
# 5. Logging (rank 0): TensorBoard, Ray metrics
# ============================================================================================


class Logger:
    """Averages step scalars and writes them to TensorBoard and Ray's metrics every N steps."""

    def __init__(self, cfg: Config, rank: int):
        self.cfg = cfg
        self.enabled = rank == 0
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.writer = None
        self.telemetry = None
        self.tb_dir = ""
        self.clips = 0
        self.t0 = time.perf_counter()
        self.data_wait = 0.0
        self.last: dict[str, float] = {}
        if not self.enabled:
            return
        if cfg.run.tensorboard:
            from tensorboardX import SummaryWriter

            self.tb_dir = tensorboard_local_dir(cfg)
            self.writer = SummaryWriter(self.tb_dir, flush_secs=30)
        from diod_ray.telemetry import Telemetry

        self.telemetry = Telemetry(cfg.run.name)

    def add(self, res, batch_clips: int, data_wait: float, lr: float, phase: str) -> None:
        if not self.enabled:
            return
        for k, v in res.terms.items():
            self.sums[f"loss/{k}"] += float(v)
        self.sums["loss/total"] += float(res.total.detach())
        for k, v in res.stats.items():
            self.sums[f"stats/{k}"] += float(v)
        self.sums["lr"] += lr
        self.count += 1
        self.clips += batch_clips
        self.data_wait += data_wait
        self.phase = phase

    def flush(self, step: int) -> dict[str, float]:
        if not self.enabled:
            return {}
        if self.count == 0:  # nothing new since the last flush: repeat its averages
            return self.last
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        avg = {k: v / self.count for k, v in self.sums.items()}
        avg["perf/clips_per_s"] = self.clips / elapsed
        avg["perf/data_wait_s"] = self.data_wait / self.count
        avg["phase"] = 0.0 if self.phase == BURN_IN else 1.0
        self._write(avg, step)
        if self.telemetry is not None:
            # stats that only exist in distillation stay unset (None) during burn-in
            self.telemetry.record(
                step=step,
                phase=avg["phase"],
                loss=avg.get("loss/total"),
                clips_per_s=avg["perf/clips_per_s"],
                data_wait_s=avg["perf/data_wait_s"],
                candidates_kept=_times(avg.get("stats/candidates_kept"), self.count),
                candidates_dropped=_times(avg.get("stats/candidates_dropped"), self.count),
                motion_kept_share=avg.get("stats/motion_kept_share"),
                teacher_student_agreement=avg.get("stats/teacher_student_agreement"),
            )
        self.last = avg
        self.sums.clear()
        self.count = 0
        self.clips = 0
        self.data_wait = 0.0
        self.t0 = time.perf_counter()
        return avg

    def image(self, step: int, batch, out, teacher_out, cfg: Config, bg: int) -> None:
        if self.writer is None:
            return
        from diod_ray.viz import training_panel

        img = training_panel(batch, out, teacher_out, bg)  # uint8 [H', W', 3]
        self.writer.add_image("slots", img, step, dataformats="HWC")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._write(values, step)
        if self.writer is not None:
            self.writer.flush()

    def _write(self, values: dict[str, Any], step: int) -> None:
        """Finite numbers only: a metric that could not be computed (NaN, None) is left out of
        TensorBoard instead of drawn as a spike (and tensorboardX's NaN warning per value)."""
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def sync_tensorboard(self) -> None:
        """Flush the event files and, for an ``s3://`` run, upload the staging directory to
        ``<run>/tensorboard`` (every file; event files only grow, and each attempt of a restarted
        run writes a new one, so what a failed attempt logged stays in storage). A local run
        writes straight into its run directory. Called with every checkpoint and at the end."""
        if self.writer is None:
            return
        self.writer.flush()
        if run_uri(self.cfg).startswith("s3://"):
            upload_directory(self.tb_dir, f"{run_uri(self.cfg)}/tensorboard", self.cfg)


def _times(mean: float | None, count: int) -> float | None:
    return None if mean is None else mean * count


def tensorboard_local_dir(cfg: Config) -> str:
    """TensorBoard files go straight to the run directory when it is local, else to a local
    staging directory that is uploaded next to the checkpoints."""
    uri = run_uri(cfg)
    if uri.startswith("s3://"):
        return os.path.join(os.path.expanduser("~/.cache/diod_ray/tensorboard"), cfg.run.name)
    return os.path.join(uri, "tensorboard")


# ============================================================================================
# 6. The loop
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


def keep_burn_in_checkpoint(ts: TrainState, epoch: int | str) -> None:
    """A burn-in checkpoint kept for good at ``<run>/kept/burn_in_epoch_<E>`` (sweep branches), or
    with ``epoch="end"`` at :func:`burn_in_end_uri` (written at every switch to distillation, so
    ``run.num_to_keep`` never prunes the end-of-burn-in model)."""
    uri = f"{run_uri(ts.cfg)}/kept/burn_in_epoch_{epoch}"
    if epoch == "end":
        uri = burn_in_end_uri(ts.cfg)
    with tempfile.TemporaryDirectory(prefix="diod-kept-") as d:
        save_checkpoint(d, ts.to_state())
        upload_directory(d, uri, ts.cfg)


def burn_in_end_uri(cfg: Config) -> str:
    """Where the end-of-burn-in checkpoint of a run is kept: ``<run>/kept/burn_in_end``."""
    return f"{run_uri(cfg)}/kept/burn_in_end"


def epoch_teacher_summary(
    ts: TrainState, activity: TeacherActivity, epoch: int, rank: int
) -> dict[str, float]:
    """One distillation epoch's teacher activity, summed over the ranks (every rank calls it), as
    ``teacher/*`` keys: kept_per_frame, frames_with_kept, motion_kept_share, and over the run so far
    min_kept_per_frame and epochs_without_candidates. Rank 0 prints one warning line when the epoch
    kept no candidate at all (the teacher term of eq. 5 was then zero)."""
    total = activity.all_reduce(ts.device)
    s = total.summary()
    rates = ("kept_per_frame", "frames_with_kept", "motion_kept_share")
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
    """Batches ``skip``..``steps``-1 of ``epoch`` for this rank: each worker builds its epoch's
    ordered Dataset itself (diod_ray/data/pipeline.py), so the stream is a function of
    (data seed, epoch, rank) and not of Ray Data's task timing."""
    from diod_ray.data.pipeline import iter_train_batches

    return iter_train_batches(cfg, epoch, steps, device, rank=rank, world=world, skip=skip)


def _inject_fault(cfg: Config) -> None:
    """Fault-tolerance testing knob (run.fault_injection_step): fail once, before any resume."""
    if cfg.run.num_workers > 0:
        os._exit(1)  # a real worker-process death: Ray Train restarts the worker group
    raise RuntimeError(f"injected fault at step {cfg.run.fault_injection_step}")
