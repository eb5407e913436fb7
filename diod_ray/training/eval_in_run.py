"""Evaluation inside a run: every rank evaluates its share of the eval dataset (split over the
ranks by Train, diod_ray.data.streaming.eval_split.EvalSplit) and the counters are summed over the
ranks (:func:`diod_ray.inference.evaluate_model` with ``all_reduce``), so the numbers are the ones
one process would compute (docs/metrics.md)."""

from __future__ import annotations

import ray.train
import torch

from diod_ray.teacher import unwrap
from diod_ray.training.state import TrainState


def head_dataset(dataset: str) -> str:
    """The name of the Train dataset holding the first clips of ``dataset`` (``val_head``: the
    per-epoch validation on ``run.val_clips`` clips), built by train.build_trainer."""
    return f"{dataset}_head"


def head_limit(cfg, max_clips: int) -> int:
    """Clips of a "first ``max_clips`` clips" pass: whole batches of ``run.eval_batch_size``, at
    least one."""
    return max(1, max_clips // cfg.run.eval_batch_size) * cfg.run.eval_batch_size


def rank_eval_batches(ts: TrainState, shard):
    """This rank's share of an evaluation pass: its shard of the eval dataset, which Train split
    over the ranks (diod_ray.data.streaming.eval_split.EvalSplit: in stored order, in blocks of
    ``run.eval_batch_size`` clips), so every clip is read and decoded by one rank only and the
    batches are the ones one process would form; the counters are summed over the ranks
    afterwards (``all_reduce``), giving the numbers one process would. Every rank iterates its
    whole shard (a shard may hold no batch)."""
    from diod_ray.data.streaming.batches import iter_eval_batches

    return iter_eval_batches(shard, ts.cfg, ts.cfg.run.eval_batch_size, ts.device)


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
    from diod_ray.inference import evaluate_model

    cfg = ts.cfg
    shard = ray.train.get_dataset_shard(head_dataset(dataset) if max_clips > 0 else dataset)
    model = unwrap(ts.student)
    if cfg.run.eval_weights == "teacher" and ts.teacher is not None:
        model = ts.teacher.model
    sync_buffers_from_rank0(model)
    if ts.teacher is not None and ts.teacher.model is not model:  # its diagnostics run below
        sync_buffers_from_rank0(ts.teacher.model)
    was_training = model.training
    summary = evaluate_model(
        model,
        rank_eval_batches(ts, shard),
        cfg,
        cfg.run.eval_protocol,
        all_reduce=True,
    )
    model.train(was_training)
    if ts.teacher is not None:
        summary.update(teacher_eval_summary(ts, shard))
    return summary


def teacher_eval_summary(ts: TrainState, shard) -> dict[str, float]:
    """The teacher's pseudo-labels on the evaluation shard's clips with GT, as ``teacher_*`` keys:
    kept per frame, frames with a kept candidate, motion masks kept, precision, static cover
    (diod_ray/teacher_diagnostics.py, docs/teacher.md); each rank its share, summed."""
    from diod_ray.teacher_diagnostics import evaluate_teacher

    batches = rank_eval_batches(ts, shard)
    summary = evaluate_teacher(ts.teacher, batches, ts.cfg, all_reduce=True)
    return {f"teacher_{k}": v for k, v in summary.items()}


def measure_gates_in_run(ts: TrainState, dataset: str = "val") -> dict[str, float]:
    """The preconditions of a test of DIOD's claim at the switch (diod_ray/preconditions.py):
    the end-of-burn-in student and the teacher just made from it, on all of ``dataset`` (every
    rank its share, counters summed). Rank 0 prints one line per gate and the verdict. Returns
    the ``gates/*`` metrics (``gates/testable`` 1 / 0)."""
    from diod_ray.preconditions import console_lines, measure_preconditions, to_metrics

    cfg = ts.cfg
    shard = ray.train.get_dataset_shard(dataset)
    model = unwrap(ts.student)
    sync_buffers_from_rank0(model)
    sync_buffers_from_rank0(ts.teacher.model)
    values = measure_preconditions(
        model,
        ts.teacher,
        lambda: rank_eval_batches(ts, shard),
        cfg,
        protocol=cfg.run.eval_protocol,
        all_reduce=True,
    )
    if ray.train.get_context().get_world_rank() == 0:
        for line in console_lines(values, dataset):
            print(line, flush=True)
    return to_metrics(values)
