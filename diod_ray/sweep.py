"""Ray Tune plumbing shared by the scripts in ``sweeps/``: stages, trials, resume, results.

A sweep lives at ``<storage>/<name>`` (local or s3://) and runs one Tune experiment per stage of
its :class:`~diod_ray.sweep_plan.SweepPlan`. Each trial is a Tune function that builds the run's
``TorchTrainer`` (Train V2 pattern, ray-notes §A.4) with a Train run name derived from the trial
id, so a retried or resumed trial resumes its own Train run. After each stage its results go to
``<stage>/results.json``; the report (``diod_ray.sweep_report``) is written from those files.

Running the same command again resumes: finished stages are read back, an interrupted stage is
restored with ``Tuner.restore(resume_unfinished=True, resume_errored=True)`` and finished trials
are not run again.

Two Ray 2.60 facts shape the trial function:
- Train local mode (``run.num_workers=0``) cannot run in a Tune trial's own process: every
  ``ray.train.*`` call there raises "deprecated when running in a function passed to Ray Tune".
  Local-mode trials therefore run the fit in a Ray task started by the trial. Local mode runs no
  Train callbacks either, so the loop puts each report on a queue the trial drains into
  ``tune.report`` (per-epoch results for ASHA); a trial ASHA stops cancels its task.
- Child tasks of a trial are captured by its placement group, where Ray Data's tasks find no CPU
  and wait forever; the fit task is scheduled outside it (``scheduling_strategy="DEFAULT"``) and
  concurrency is bounded by ``max_concurrent_trials`` instead, and by the stage's slots actor
  (:mod:`diod_ray.sweep_slots`) for trials Tune restores, which that limit does not cover.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import ray
from ray import tune

from diod_ray.config import (
    Config,
    ConfigError,
    add_set_argument,
    apply_overrides,
    load_config,
    parse_set,
    preset_names,
    to_dict,
)
from diod_ray.storage_paths import normalise_uri
from diod_ray.sweep_plan import (
    PlanError,
    Stage,
    SweepPlan,
    asha_grace_period,
    asha_max_t,
    branch_id,
    device_hours,
    device_kind,
    kept_checkpoint,
    max_concurrent_trials,
    trial_resources,
)
from diod_ray.sweep_report import (
    RESULTS_FILE,
    SWEEP_FILE,
    exists,
    join,
    read_json,
    seconds_per_epoch,
    write_json,
    write_report,
)
from diod_ray.sweep_slots import slot_held, slots_name, start_slots

RUNS_DIR = "runs"


class SweepError(RuntimeError):
    """A sweep cannot start or continue; the message says why and what to change."""


# ============================================================================================
# 1. The trial: a Tune function that builds and fits the run's TorchTrainer
# ============================================================================================


def trial_config(config: dict[str, Any], trial_id: str) -> Config:
    """The run's Config from a trial's param dict: preset, the sweep's --set overrides, the
    stage's fixed and searched dotted keys, the named variant, the branch checkpoint, and the
    Train run (name from the trial id, storage under the sweep)."""
    meta = config["_sweep"]
    cfg = load_config(meta["preset"], meta.get("config_file"), None)
    cfg = apply_overrides(cfg, meta.get("overrides", {}))
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    cfg = apply_overrides(cfg, params)
    branch_epoch = cfg.schedule.burn_in_epochs  # the stage's burn-in length, before any variant
    if "_variant" in config:  # a variant may change the schedule (the continued burn-in control)
        cfg = apply_overrides(cfg, meta["variants"][config["_variant"]])
    extra: dict[str, Any] = {
        "run.name": f"{meta['stage']}-{trial_id}",
        "run.storage_path": meta["runs"],
    }
    if meta.get("branch_key") is not None:
        key = branch_id(config, meta["branch_key"])
        if key not in meta["branch_runs"]:
            raise SweepError(f"no burn-in run for {meta['branch_key']}={key} in the burn_in stage")
        extra["run.init_from"] = kept_checkpoint(meta["branch_runs"][key], branch_epoch)
    return apply_overrides(cfg, extra)


@ray.remote
def _fit_local_mode(cfg_dict: dict[str, Any], threads: int, reports=None) -> dict[str, Any]:
    """Fit a ``run.num_workers=0`` (local mode) TorchTrainer in this task's process; every report
    is also put on ``reports`` (a ``ray.util.queue.Queue``) for the trial to pass on to Tune."""
    import torch

    from diod_ray.config import from_dict
    from diod_ray.loop import set_local_report_sink
    from diod_ray.train import build_trainer

    torch.set_num_threads(max(1, threads))
    if reports is not None:
        set_local_report_sink(reports.put)
    try:
        result = build_trainer(from_dict(cfg_dict)).fit()
    finally:
        set_local_report_sink(None)
    if result.error is not None:
        raise result.error
    return dict(result.metrics or {})


def _run_local_mode_trial(
    cfg: Config, threads: int, heartbeat=lambda: None, extra: dict[str, Any] | None = None
) -> None:
    """Run a local-mode fit in a task and pass each of its reports to Tune as it arrives, so ASHA
    sees per-epoch results. When Tune stops the trial (ASHA), ``tune.report`` exits this thread
    and the fit task is cancelled; its checkpoints stay under the run directory."""
    from ray.util.queue import Queue

    # num_cpus=0 and out of the trial's placement group: a 0-CPU mailbox, not a worker
    reports = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": "DEFAULT"})
    fit = _fit_local_mode.options(
        num_cpus=0,
        num_gpus=1 if cfg.run.use_gpu else 0,
        scheduling_strategy="DEFAULT",  # out of the trial's placement group (see top)
    ).remote(to_dict(cfg), threads, reports)
    extra = extra or {}  # added to every result passed on
    done = False
    try:
        forwarded = 0
        while not done:
            done = bool(ray.wait([fit], timeout=2.0)[0])
            heartbeat()  # keeps this trial's slot (sweep_slots)
            while not reports.empty():  # after the task ended, everything it put is here
                tune.report({**reports.get_nowait(), **extra})
                forwarded += 1
        final = ray.get(fit)  # raises the fit's error
        if forwarded == 0:
            tune.report({**final, **extra})
    finally:
        if not done:  # Ray would also kill it with this trial's actor (its owner); be explicit
            ray.cancel(fit, force=True)
        ray.kill(reports.actor)


def trial_driver(config: dict[str, Any]) -> None:
    """The Tune trainable of every sweep stage."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from diod_ray.train import build_trainer

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(config, trial_id)
    if cfg.run.num_workers == 0:
        meta = config["_sweep"]
        with slot_held(meta["runs"], meta["stage"], trial_id) as (waited, heartbeat):
            # the wait is in Tune's time_total_s but is not training: reported for the cost report
            extra = {"sweep/slot_wait_s": waited}
            _run_local_mode_trial(cfg, int(meta.get("threads", 1)), heartbeat, extra)
        return
    result = build_trainer(cfg, callbacks=[TuneReportCallback()]).fit()
    if result.error is not None:
        raise result.error


# ============================================================================================
# 2. Interrupting on purpose: stop gracefully after N trials (as Ctrl+C would)
# ============================================================================================

# set by run_stage for the current invocation only (callbacks are pickled with the experiment,
# so the limit must not live in the callback object or a resumed run would stop again)
_STOP_AFTER_TRIALS: int | None = None


class StopAfterTrials(tune.Callback):
    """After ``--stop-after-trials`` trials finished in this invocation, send ourselves SIGUSR1,
    which Tune handles like Ctrl+C: running trials are stopped, the experiment state is saved and
    the same command resumes it."""

    def setup(self, **info) -> None:
        self.limit = _STOP_AFTER_TRIALS
        self.done = 0

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done += 1
        if self.limit is not None and self.done >= self.limit:
            print(
                f"[sweep] stopping after {self.done} trial(s) as asked; run again to resume",
                flush=True,
            )
            os.kill(os.getpid(), signal.SIGUSR1)


# ============================================================================================
# 3. One stage = one Tune experiment (new or restored)
# ============================================================================================


def _storage(root: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for ray.tune.RunConfig / Tuner.restore."""
    if root.startswith("s3://"):
        from diod_ray.data.storage import filesystem_for

        fs, path = filesystem_for(root)
        return path, fs
    os.makedirs(root, exist_ok=True)
    return root, None


def stage_param_space(
    stage: Stage, meta: dict[str, Any], search_space: dict[str, Any] | None = None
) -> dict[str, Any]:
    space: dict[str, Any] = dict(stage.fixed)
    space.update({k: tune.grid_search(list(v)) for k, v in stage.grid.items()})
    space.update(search_space or {})
    space["_sweep"] = meta
    return space


def _epochs_trained(stage: Stage, params: dict[str, Any], metrics: dict[str, Any]) -> int:
    """Epochs this trial trained: its last reported epoch minus where its branch started (a trial
    ASHA stopped trained fewer than the stage plans)."""
    if not isinstance(metrics.get("epoch"), (int, float)):
        return stage.epochs_per_trial
    start = int(params.get("schedule.burn_in_epochs", 0)) if stage.branch_key is not None else 0
    return max(0, int(metrics["epoch"]) - start)


def stored_statuses(exp_path: str, storage_fs=None) -> dict[str, str]:
    """Trial id -> status as the experiment state on storage has it, i.e. as a restore sees it.

    After an interrupt (Ctrl+C, SIGUSR1) the in-memory trials that were running read
    TERMINATED, although they never finished; the stored state has them unfinished (PENDING).
    """
    try:
        analysis = tune.ExperimentAnalysis(exp_path, storage_filesystem=storage_fs)
    except Exception as e:  # no state written yet: fall back to the in-memory statuses
        print(f"[sweep] could not read the stored trial states of {exp_path}: {e}", flush=True)
        return {}
    return {t.trial_id: t.status for t in analysis.trials}


def results_of(
    result_grid, stage: Stage, runs_root: str, statuses: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One JSON-able row per trial: params, status (stored, see :func:`stored_statuses`), last
    metrics, Train run, timing."""
    # ResultGrid keeps its results in the order of its experiment analysis' trials, which carry
    # the trial id and the status (TERMINATED also for trials ASHA stopped early)
    trials = result_grid._experiment_analysis.trials
    statuses = statuses or {}
    rows = []
    for trial, r in zip(trials, result_grid):
        config = dict(r.config or {})
        params = {k: v for k, v in config.items() if k != "_sweep"}
        metrics = {
            k: v
            for k, v in (r.metrics or {}).items()
            if isinstance(v, (int, float, str, bool)) or v is None
        }
        rows.append(
            {
                "trial_id": trial.trial_id,
                "status": statuses.get(trial.trial_id, trial.status),
                "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}"[:2000],
                "params": params,
                "metrics": metrics,
                "train_run": f"{runs_root}/{stage.name}-{trial.trial_id}",
                "time_total_s": metrics.get("time_total_s"),
                "epochs_trained": _epochs_trained(stage, params, metrics),
            }
        )
    rows.sort(key=lambda t: t["trial_id"])
    return rows


def run_stage(
    stage: Stage,
    *,
    root: str,
    meta: dict[str, Any],
    max_concurrent: int,
    bundles: list[dict[str, float]],
    search_space: dict[str, Any] | None = None,
    search_alg=None,
    scheduler=None,
    reuse_actors: bool = True,
    max_failures: int = 0,
    stop_after_trials: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one stage and write ``<root>/<stage>/results.json``; returns its content.

    A stage whose results.json lists every trial as finished is not run again.
    """
    global _STOP_AFTER_TRIALS
    results_uri = join(root, stage.name, RESULTS_FILE)
    if exists(results_uri):
        stored = read_json(results_uri)
        if stored.get("complete"):
            print(f"[sweep] stage {stage.name}: finished before, reusing {results_uri}", flush=True)
            return stored
    storage_path, storage_fs = _storage(root)
    exp_path = f"{storage_path}/{stage.name}"
    trainable = tune.with_resources(trial_driver, tune.PlacementGroupFactory(bundles))
    _STOP_AFTER_TRIALS = stop_after_trials
    # the searcher's and ASHA's metrics appear only in some reports (final/*, val/*)
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    if tune.Tuner.can_restore(exp_path, storage_filesystem=storage_fs):
        print(f"[sweep] stage {stage.name}: resuming {exp_path}", flush=True)
        tuner = tune.Tuner.restore(
            exp_path,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage_fs,
        )
    else:
        print(
            f"[sweep] stage {stage.name}: {stage.num_trials} trial(s), up to {max_concurrent} at once",
            flush=True,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=stage_param_space(stage, meta, search_space),
            tune_config=tune.TuneConfig(
                num_samples=stage.num_samples or 1,
                search_alg=search_alg,
                scheduler=scheduler,
                max_concurrent_trials=max_concurrent,
                reuse_actors=reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=stage.name,
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[StopAfterTrials()],
                verbose=1,
            ),
        )
    # bounds local-mode fits also for trials Tune restores (it ignores max_concurrent_trials then)
    slots = start_slots(slots_name(meta["runs"], stage.name), max_concurrent)
    try:
        grid = tuner.fit()
    finally:
        _STOP_AFTER_TRIALS = None
        ray.kill(slots)
    trials = results_of(grid, stage, meta["runs"], stored_statuses(exp_path, storage_fs))
    finished = sum(t["status"] == "TERMINATED" for t in trials)
    data = {
        "kind": meta["kind"],
        "stage": stage.name,
        "sweep": meta["name"],
        "complete": finished == stage.num_trials and not any(t["error"] for t in trials),
        "trials": trials,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(results_uri, data)
    return data


# ============================================================================================
# 4. A whole sweep: plan -> stages -> report
# ============================================================================================


def cluster_resources() -> dict[str, float]:
    """The cluster's CPUs and GPUs (joins RAY_ADDRESS or starts a local Ray)."""
    from diod_ray.train import ensure_ray

    ensure_ray()
    res = ray.cluster_resources()
    return {"CPU": float(res.get("CPU", 0)), "GPU": float(res.get("GPU", 0))}


def local_resources() -> dict[str, float]:
    """This machine's CPUs and GPUs, for --dry-run (which starts no Ray)."""
    gpus = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip()])
    elif os.path.exists("/proc/driver/nvidia/gpus"):
        gpus = len(os.listdir("/proc/driver/nvidia/gpus"))
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}


def base_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    """The preset + --config + --set of the command, and the --set overrides as a typed dict."""
    overrides = dict(parse_set(s) for s in (args.sets or []))
    cfg = load_config(args.preset, args.config, None)
    return apply_overrides(cfg, overrides), overrides


def sweep_meta(
    args: argparse.Namespace, kind: str, root: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": args.name,
        "preset": args.preset,
        "config_file": os.path.abspath(args.config) if args.config else None,
        "overrides": overrides,
        "runs": f"{root}/{RUNS_DIR}",
    }


def describe(
    plan: SweepPlan,
    cfg: Config,
    cluster: dict[str, float],
    cpus_per_trial: float,
    seconds_per_epoch_hint: float | None,
) -> dict[str, Any]:
    """The --dry-run summary: trials per stage, reuse, concurrency, and estimated cost."""
    res = trial_resources(cfg, cpus_per_trial)
    conc = max_concurrent_trials(cluster, res.total)
    kind = device_kind(cfg)
    out = plan.to_dict()
    out["resources"] = {
        "cluster": cluster,
        "per_trial": res.total,
        "max_concurrent_trials": conc,
        "device": kind,
    }
    if seconds_per_epoch_hint:
        s = seconds_per_epoch_hint
        out["estimate"] = {
            "seconds_per_epoch": s,
            f"{kind}_hours": round(device_hours(plan.epochs, s, res.total, kind), 4),
            f"naive_{kind}_hours": round(device_hours(plan.naive_epochs, s, res.total, kind), 4),
            f"saved_{kind}_hours": round(device_hours(plan.epochs_saved, s, res.total, kind), 4),
            "wall_hours_lower_bound": round(
                sum(-(-st.num_trials // conc) * st.epochs_per_trial * s for st in plan.stages)
                / 3600,
                4,
            ),
        }
    return out


def print_plan(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2, default=str))
    ep = summary["epochs"]
    print(
        f"\nreuse: {ep['burn_in']} burn-in + {ep['distill']} distillation epochs instead of "
        f"{ep['naive_burn_in']} + {ep['naive_distill']} (saves {ep['saved']} epochs)",
        flush=True,
    )


def run_sweep(
    args: argparse.Namespace,
    plan: SweepPlan,
    *,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a plan's stages in order (each resumable), then write the report.

    ``search``: for the stage named ``search``: ``space`` (Tune distributions), ``search_alg``
    and ``scheduler`` factories (called with the stage's Config).
    """
    cfg, overrides = base_config(args)
    root = normalise_uri(f"{args.storage.rstrip('/')}/{args.name}")
    meta = sweep_meta(args, plan.kind, root, overrides)
    if cfg.data.generate_if_missing:
        from diod_ray.data.generate import ensure_synthetic

        ensure_synthetic(cfg)
    cluster = cluster_resources()
    res = trial_resources(cfg, args.cpus_per_trial)
    conc = max_concurrent_trials(cluster, res.total)
    if args.max_concurrent:
        conc = min(conc, args.max_concurrent)
    # torch threads of a local-mode fit: its share minus the data tasks' CPU
    meta["threads"] = max(1, int(args.cpus_per_trial) - 1)
    sweep_file = {
        **{k: v for k, v in meta.items() if k != "runs"},
        "runs": meta["runs"],
        "plan": plan.to_dict(),
        "resources": {
            "cluster": cluster,
            "per_trial": res.total,
            "device": device_kind(cfg),
            "max_concurrent_trials": conc,
        },
    }
    if search and "asha" in search:
        sweep_file["asha"] = search["asha"]
    previous = join(root, SWEEP_FILE)
    if exists(previous):
        old = read_json(previous)
        if old.get("plan") != json.loads(json.dumps(plan.to_dict(), default=str)) or old.get(
            "overrides"
        ) != json.loads(json.dumps(overrides)):
            raise SweepError(
                f"{previous} holds a different sweep (plan or --set differ); use another --name "
                "or --storage, or delete that directory to start over"
            )
    write_json(previous, sweep_file)
    stage_results: dict[str, dict[str, Any]] = {}
    for stage in plan.stages:
        stage_meta = {**meta, "stage": stage.name, "variants": stage.variants}
        if stage.branch_key is not None:
            burn = stage_results["burn_in"]
            runs = {}
            for t in burn["trials"]:
                if t["status"] == "TERMINATED" and not t["error"]:
                    runs[branch_id(t["params"], stage.branch_key)] = t["train_run"]
            stage_meta.update(branch_key=stage.branch_key, branch_runs=runs)
        kwargs: dict[str, Any] = {}
        if stage.name == "search" and search:
            stage_cfg = apply_overrides(cfg, stage.fixed)
            kwargs = dict(
                search_space=search["space"],
                search_alg=search["search_alg"](stage_cfg),
                scheduler=search["scheduler"](stage_cfg),
                reuse_actors=False,
            )
        data = run_stage(
            stage,
            root=root,
            meta=stage_meta,
            max_concurrent=conc,
            bundles=res.bundles,
            max_failures=args.max_failures,
            stop_after_trials=args.stop_after_trials,
            **kwargs,
        )
        stage_results[stage.name] = data
        if not data["complete"]:
            report = write_report(root)
            print(
                f"[sweep] stage {stage.name} did not finish (interrupted or failed trials); "
                f"run the same command again to resume. Partial report: {report['table']}",
                flush=True,
            )
            return {"root": root, "complete": False, "report": report}
    report = write_report(root)
    rate = (
        seconds_per_epoch(stage_results.get("burn_in", {})) if "burn_in" in stage_results else None
    )
    print(f"[sweep] done: {report['table']}, {report['csv']}, {report['plot']}", flush=True)
    return {"root": root, "complete": True, "report": report, "seconds_per_burn_in_epoch": rate}


# ============================================================================================
# 5. The command line shared by the three scripts
# ============================================================================================


def sweep_parser(prog: str, description: str, default_name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--preset", default="synthetic", help=f"preset ({', '.join(preset_names())})")
    p.add_argument("--config", default=None, help="YAML file merged over the preset")
    add_set_argument(p, help="dotted override applied to every trial, e.g. --set data.batch_size=4")
    p.add_argument(
        "--storage",
        default="~/diod_ray_sweeps",
        help="where sweeps live: local path or s3://bucket/prefix",
    )
    p.add_argument(
        "--name",
        default=default_name,
        help="sweep name; the same (storage, name) resumes an interrupted sweep",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="run.seed values (default 0)")
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=2.0,
        help="CPUs one local-mode trial (run.num_workers=0) stands for: training plus "
        "its Ray Data tasks (default 2); with Train workers: 1 per worker + 1 for data",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        help="cap on trials at once (default: cluster resources / resources per trial)",
    )
    p.add_argument("--max-failures", type=int, default=0, help="Tune-level retries per trial")
    p.add_argument(
        "--stop-after-trials",
        type=int,
        default=None,
        help="stop gracefully after N trials finish (resume later with the same command)",
    )
    p.add_argument(
        "--seconds-per-epoch",
        type=float,
        default=None,
        help="for --dry-run's estimate (default: measured by a stored sweep, if any)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (trials, reuse, estimated cost) and start nothing",
    )
    return p


def dry_run(args: argparse.Namespace, plan: SweepPlan) -> dict[str, Any]:
    cfg, _ = base_config(args)
    hint = args.seconds_per_epoch
    root = normalise_uri(f"{args.storage.rstrip('/')}/{args.name}")
    if hint is None:
        try:
            uri = join(root, "burn_in", RESULTS_FILE)
            if exists(uri):
                hint = seconds_per_epoch(read_json(uri))
        except Exception:
            hint = None
    summary = describe(plan, cfg, local_resources(), args.cpus_per_trial, hint)
    summary["sweep_dir"] = root
    print_plan(summary)
    return summary


def main_for(
    build_plan,
    prog: str,
    description: str,
    default_name: str,
    add_args=None,
    search_factory=None,
    argv: list[str] | None = None,
) -> int:
    """Shared main: parse, build the plan, then --dry-run or run."""
    parser = sweep_parser(prog, description, default_name)
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    try:
        plan = build_plan(args)
        if args.dry_run:
            dry_run(args, plan)
            return 0
        search = search_factory(args) if search_factory else None
        out = run_sweep(args, plan, search=search)
    except (ConfigError, PlanError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, default=str), flush=True)
    return 0 if out["complete"] else 3


# ============================================================================================
# 6. The three sweeps
# ============================================================================================


def threshold_search(args: argparse.Namespace) -> dict[str, Any]:
    """Optuna (TPE) over p, optionally the EMA rate and alpha; ASHA on val/f1 past burn-in."""
    from ray.tune.schedulers import ASHAScheduler

    from diod_ray.sweep_search import FinalMetricOptunaSearch

    space: dict[str, Any] = {"distill.p": tune.uniform(args.p_min, args.p_max)}
    if args.search_ema:
        space["distill.ema"] = tune.uniform(args.ema_min, args.ema_max)
    if args.search_alpha:
        space["objectives.alpha"] = tune.uniform(args.alpha_min, args.alpha_max)
    cfg, _ = base_config(args)
    cfg = apply_overrides(
        cfg, {"schedule.burn_in_epochs": args.burn_in, "schedule.distill_epochs": args.distill}
    )
    return {
        "space": space,
        "search_alg": lambda c: FinalMetricOptunaSearch(
            metric="final/f1", mode="max", seed=args.search_seed
        ),
        "scheduler": lambda c: ASHAScheduler(
            time_attr="epoch",
            metric="val/f1",
            mode="max",
            grace_period=asha_grace_period(c),
            max_t=asha_max_t(c),
            reduction_factor=args.reduction_factor,
        ),
        "asha": {
            "grace_period": asha_grace_period(cfg),
            "max_t": asha_max_t(cfg),
            "metric": "val/f1",
            "time_attr": "epoch",
        },
    }
