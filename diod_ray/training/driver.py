"""The trainer driver: config -> TorchTrainer -> fit -> summary (``summary.json`` in the run).

:func:`run` prepares the data (generating the synthetic shards if asked), joins or starts Ray
(:func:`ensure_ray`), fits, and writes the summary; ``python -m diod_ray.train`` is its CLI. A run
is ``(run.storage_path, run.name)``: running the same command again resumes it.
"""

from __future__ import annotations

import os
from typing import Any

from diod_ray import storage
from diod_ray.config import Config, to_dict
from diod_ray.preconditions import from_metrics, premise_line, summary_json
from diod_ray.storage import json_safe, run_uri

SUMMARY_FILE = "summary.json"
METRIC_NAMES = (
    "fg_ari",
    "all_ari",
    "f1",
    "precision",
    "recall",
    "static_recall",
    "moving_recall",
    "mbo",
)


def steps_per_epoch(cfg: Config) -> int:
    """``schedule.steps_per_epoch``, or the train split's clips over the global batch size
    (``data.batch_size`` is global: one optimiser step sees that many clips in all)."""
    if cfg.schedule.steps_per_epoch > 0:
        return cfg.schedule.steps_per_epoch
    from diod_ray.data.shards.store import count_clips

    clips = count_clips(cfg.data.uri, cfg.data.train_split, cfg.storage)
    return max(1, clips // cfg.data.batch_size)


def measures_gates(cfg: Config) -> bool:
    """A run measures the preconditions (diod_ray/preconditions.py) at the switch to distillation
    on the val split: it distils and evaluates its phases (``run.evaluate_at_end``)."""
    return cfg.schedule.distill_epochs > 0 and cfg.run.evaluate_at_end


def build_trainer(cfg: Config, *, callbacks=()):
    """The TorchTrainer of a run: DDP over ``run.num_workers`` (0 = in-process local mode)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from diod_ray.data.streaming.datasets import eval_dataset, train_index
    from diod_ray.data.streaming.eval_split import EvalSplit
    from diod_ray.training.eval_in_run import head_dataset, head_limit
    from diod_ray.training.loop import train_loop_per_worker

    storage_path, storage_fs = storage.ray_storage(cfg.run.storage_path, cfg.storage)
    # the train split's manifest is checked here (one request); each worker builds its own
    # ordered Dataset for the rest of the run when it starts (loop._iter_batches): a
    # deterministic stream of (data seed, epoch, rank) that starts where a resumed run stands
    train_index(cfg)
    # eval datasets: split over the workers by Train (EvalSplit), each clip read once per pass,
    # in blocks of run.eval_batch_size clips, so every rank's batches are one process's batches
    bs = cfg.run.eval_batch_size
    datasets = {}
    if cfg.run.evaluate_at_end:
        datasets["test"] = eval_dataset(cfg, cfg.data.test_split, batch_size=bs)
    # val/* per epoch on the first run.val_clips clips ("val_head"), and the preconditions
    # measured at the switch to distillation on all of it (gates/*,
    # loop.measure_gates_at_switch): the val split, else test (said once)
    per_epoch = cfg.run.val_every_epochs > 0
    if per_epoch or measures_gates(cfg):
        from diod_ray.data.splits import resolve_val_split

        val = resolve_val_split(cfg)
        if measures_gates(cfg) or (per_epoch and cfg.run.val_clips <= 0):
            datasets["val"] = eval_dataset(cfg, val, batch_size=bs)
        if per_epoch and cfg.run.val_clips > 0:
            limit = head_limit(cfg, cfg.run.val_clips)
            datasets[head_dataset("val")] = eval_dataset(cfg, val, batch_size=bs, limit=limit)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": to_dict(cfg), "steps_per_epoch": steps_per_epoch(cfg)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.run.num_workers,
            use_gpu=cfg.run.use_gpu,
            resources_per_worker={"CPU": cfg.run.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.run.num_to_keep),
            callbacks=list(callbacks),
            logging_config=ray.train.LoggingConfig(log_level=cfg.run.ray_train_log_level),
            # Train V2 turns print() in workers into a log record AND tees it to stdout where
            # stdout is wrapped (Ray workers), so each per-epoch line reached the terminal twice
            # (once on stdout, once through the console log handler on stderr); plain print
            # reaches the driver once, through Ray's log forwarding
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        ),
        datasets=datasets,
        dataset_config=EvalSplit(),
    )


# Settings for a Ray instance this process starts itself (a laptop, one machine); every Ray process
# of that instance inherits them. A user's own value wins. Joined clusters are left as they are.
LOCAL_CLUSTER_ENV = {
    # Train V2's preemption watcher follows node drains (spot nodes of a cluster); a one-machine
    # instance has none, and creating the watcher logs a core_worker.cc ERROR line on the console
    # of every run ("PreemptionWatcher ... has constructor arguments in the object store and
    # max_restarts > 0", ray-project/ray#53727). On clusters it stays on.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (set by ``ray job submit``; ``RAY_ADDRESS=auto``
    joins one started with ``ray start``), else start a fresh local Ray for this process.

    Without RAY_ADDRESS, ``ray.init()`` would try the address recorded in
    /tmp/ray/ray_current_cluster, which after a crash points at a dead cluster and hangs.

    Ray Data's per-execution console blocks are quieted first (this process's datasets, and a
    local cluster's processes inherit the setting): every command line that runs Ray goes
    through here."""
    import ray

    from diod_ray.training.console import quiet_ray_data_console

    quiet_ray_data_console()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.update({k: v for k, v in LOCAL_CLUSTER_ENV.items() if k not in os.environ})
    ray.init(address=address or "local", log_to_driver=True)


def summarise(cfg: Config, result, premise: dict | None = None) -> dict[str, Any]:
    """The final JSON line. ``premise``: the data's premise measured before training
    (:func:`measure_premise`), which joins the gates' verdict."""
    metrics = dict(result.metrics or {})
    ckpt = result.checkpoint
    checkpoint = storage.uri_of(ckpt.path, ckpt.filesystem) if ckpt is not None else None
    out: dict[str, Any] = {"run": cfg.run.name}
    for phase in ("burn_in", "final"):
        # an evaluated phase lists every metric; one that could not be computed (no moving
        # flags: static/moving recall; no prediction: precision) is null, never NaN
        measured = any(f"{phase}/{k}" in metrics for k in METRIC_NAMES)
        out[phase] = (
            {k: json_safe(metrics.get(f"{phase}/{k}")) for k in METRIC_NAMES} if measured else {}
        )
    out.update(
        {
            "steps": metrics.get("step"),
            "resumed_from_step": metrics.get("resumed_from_step", -1),
            "epochs": metrics.get("epoch"),
            "run_dir": run_uri(cfg),
            "checkpoint": checkpoint,
            "tensorboard": f"tensorboard --logdir {run_uri(cfg)}/tensorboard",
        }
    )
    if metrics.get("burn_in_kept"):
        from diod_ray.training.state import burn_in_end_uri

        out["burn_in_checkpoint"] = burn_in_end_uri(cfg)
    if cfg.schedule.distill_epochs > 0:
        out["teacher"] = teacher_summary(cfg, metrics)
    gates = from_metrics(metrics)
    if gates is not None:  # measured at the switch (a distillation run): gates and verdict
        # the data's premise joins the verdict ("untestable: premise, ...")
        out["preconditions"] = summary_json(gates, premise=premise)
    if premise is not None:
        out["premise"] = premise
    return out


def measure_premise(cfg: Config) -> dict | None:
    """Whether the data satisfies DIOD's premise (diod_ray/data/inspection/premise.py), measured
    once before a distillation run trains (a few seconds on the synthetic preset) and printed in
    one line; None for a burn-in-only run, which tests no claim, or ``run.measure_premise``
    false."""
    if cfg.schedule.distill_epochs <= 0 or not cfg.run.measure_premise:
        return None
    from diod_ray.data.inspection.summary import benchmark_premise

    premise = benchmark_premise(cfg)
    print(premise_line(premise), flush=True)
    return premise


def teacher_summary(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    """The "teacher" object of the final JSON line (docs/teacher.md): its EMA horizon, the last
    distillation epoch's activity on training batches (``teacher/*``), and its GT-based
    pseudo-label diagnostics at the end of burn-in and at the end (``burn_in/teacher_*``,
    ``final/teacher_*``). NaN (nothing to rate) is written as null."""
    from diod_ray.teacher import half_life, keep_rate

    keep = keep_rate(cfg)
    out: dict[str, Any] = {
        "score_source": cfg.distill.score_source,
        "p": cfg.distill.p,
        "ema_keep_rate": keep,
        "ema_half_life_steps": json_safe(half_life(keep)),
    }
    out.update(
        {k[len("teacher/") :]: json_safe(v) for k, v in metrics.items() if k.startswith("teacher/")}
    )
    for phase in ("burn_in", "final"):
        key = f"{phase}/teacher_"
        part = {k[len(key) :]: json_safe(v) for k, v in metrics.items() if k.startswith(key)}
        if part:
            out[phase] = part
    return out


def write_summary(cfg: Config, summary: dict[str, Any]) -> None:
    """``<run>/summary.json``, written atomically (local or S3, :mod:`diod_ray.storage`)."""
    storage.write_json(f"{run_uri(cfg)}/{SUMMARY_FILE}", summary, cfg.storage, indent=2)


def fit(cfg: Config):
    """``trainer.fit()``: Ray's FailureConfig (``run.max_failures``) restarts a failed worker
    group from the run's last checkpoint; the result's error, if any, is raised."""
    result = build_trainer(cfg).fit()
    if result.error is not None:
        raise result.error
    return result


def run(cfg: Config, *, progress: bool = True) -> dict[str, Any]:
    """Prepare data, fit, evaluate; return the summary (also written to the run directory)."""
    if cfg.data.generate_if_missing:
        from diod_ray.data.synthetic.generate import ensure_synthetic

        ensure_synthetic(cfg, progress=progress)
    premise = measure_premise(cfg)
    # quiets Ray Data before Ray starts: the driver checks the shards with Ray Data before the fit
    ensure_ray()
    from diod_ray.training.shared_storage import check_run_storage

    check_run_storage(cfg)  # a node-local run.storage_path on a multi-node cluster: refused here
    result = fit(cfg)
    summary = summarise(cfg, result, premise)
    write_summary(cfg, summary)
    return summary
