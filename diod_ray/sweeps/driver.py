"""The Tune driver of every sweep: stages -> Tune experiments of Train runs (docs/sweeps.md).

A sweep lives at ``<storage>/<name>`` (local or s3://) and runs one Tune experiment per stage of
its :class:`~diod_ray.sweeps.plan.SweepPlan`. Each trial is a Tune function trainable (the Train
V2 + Tune pattern, Ray's "Hyperparameter tuning with Ray Tune" guide) that builds the run's
``TorchTrainer`` with at least one Train worker holding real resources and passes every report
to Tune through ``TuneReportCallback``. The Train run is named after the trial id, so a Tune-level
retry or a restored trial resumes its own Train run from its last checkpoint.

Concurrency is Tune's: ``max_concurrent_trials`` (from ``--max-concurrent`` or the plan), the
driver's bundle and the Train workers' placement group; extra trials wait for resources (on an
autoscaling cluster, for the autoscaler). Running the same command again resumes: finished stages
are read back, an interrupted stage is restored with ``Tuner.restore``.

The console is the sweep's ``[sweep]`` lines and the trials' own per-epoch lines: Tune's status
table, experiment box, result-path hints and its interrupt and restore messages are off
(:mod:`diod_ray.sweeps.tune_console`), its trial errors are not.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ray import tune

from diod_ray.config import Config, apply_overrides, load_config
from diod_ray.sweeps.plan import (
    MODE,
    OBJECTIVE,
    Stage,
    TrialResources,
    branch_id,
    kept_checkpoint,
    train_workers,
)
from diod_ray.sweeps.store import (
    exists,
    join,
    read_json,
    sweep_settings,
    tune_storage,
    write_json,
)
from diod_ray.sweeps.tune_console import stop_announced, tune_console

RUNS_DIR = "runs"
RESULTS_FILE = "results.json"
FITS_DIR = "fits"  # per fit attempt: {"start", "end"} wall times, written by the trial


class SweepError(RuntimeError):
    """A sweep cannot start or continue; the message says why and what to change."""


# ============================================================================================
# 1. The trial: a Tune function that builds and fits the run's TorchTrainer
# ============================================================================================


def trial_config(params: dict[str, Any], sweep: dict[str, Any], trial_id: str) -> Config:
    """The run's Config: preset, the sweep's --set overrides, the stage's fixed and searched
    dotted keys, the named variant, the branch checkpoint, >= 1 Train worker, and the Train run
    (name from the trial id, storage under the sweep)."""
    cfg = load_config(sweep["preset"], sweep.get("config_file"), None)
    cfg = apply_overrides(cfg, sweep.get("overrides", {}))
    cfg = apply_overrides(cfg, {k: v for k, v in params.items() if not k.startswith("_")})
    branch_epoch = cfg.schedule.burn_in_epochs  # the stage's burn-in length, before any variant
    if "_variant" in params:  # a variant may change the schedule (the continued burn-in control)
        cfg = apply_overrides(cfg, sweep["variants"][params["_variant"]])
    extra: dict[str, Any] = {
        "run.name": f"{sweep['stage']}-{trial_id}",
        "run.storage_path": sweep["runs"],
        "run.num_workers": train_workers(cfg),
    }
    if sweep.get("branch_key") is not None:
        key = branch_id(params, sweep["branch_key"])
        if key not in sweep["branch_runs"]:
            raise SweepError(f"no burn-in run for {sweep['branch_key']}={key} in the burn_in stage")
        extra["run.init_from"] = kept_checkpoint(sweep["branch_runs"][key], branch_epoch)
    return apply_overrides(cfg, extra)


def trial_driver(config: dict[str, Any], sweep: dict[str, Any]) -> None:
    """The Tune trainable of every stage (``sweep``: the stage's metadata, bound with
    ``tune.with_parameters``). Records the wall times of its fit under the Train run's
    ``fits/`` so a test can measure how many fits ran at once."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from diod_ray.storage import run_uri
    from diod_ray.training.console import quiet_ray_data_console
    from diod_ray.training.driver import build_trainer

    # this trial's process builds the run's datasets (they carry its DataContext into the Train
    # worker): without this, every eval pass printed Ray Data's progress bars on the console
    quiet_ray_data_console()
    cfg = trial_config(config, sweep, tune.get_context().get_trial_id())
    start = time.time()
    times = join(run_uri(cfg), FITS_DIR, f"{start:.6f}.json")
    write_json(times, {"start": start, "end": None}, cfg.storage)
    result = build_trainer(cfg, callbacks=[TuneReportCallback()]).fit()
    write_json(times, {"start": start, "end": time.time()}, cfg.storage)
    if result.error is not None:
        raise result.error


def trainable(sweep: dict[str, Any], res: TrialResources):
    """The trial function with the stage's metadata bound and the driver's bundle requested (the
    Train workers are placed by Ray Train's own placement group)."""
    bound = tune.with_parameters(trial_driver, sweep=sweep)
    return tune.with_resources(bound, tune.PlacementGroupFactory([res.driver]))


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
            print(f"[sweep] stopping after {self.done} trial(s) as asked; run again to resume")
            stop_announced()  # the stop signal's own [sweep] line would repeat this one
            os.kill(os.getpid(), signal.SIGUSR1)


class TrialLines(tune.Callback):
    """The sweep's console: one line when a trial starts and one when it ends (with its F1@50
    at the branch start and at the end, or where its traceback is), in place of Tune's 30-second
    status table (``RunConfig(verbose=0)``) and its per-trial lines (:mod:`.tune_console`); the
    trials' own one-line-per-epoch output is unchanged."""

    def __init__(self, stage: str, num_trials: int) -> None:
        self.stage, self.num_trials = stage, num_trials

    def setup(self, **info) -> None:
        self.started: dict[str, float] = {}
        self.ended = 0

    def _name(self, trial) -> str:
        params = {k: v for k, v in (trial.config or {}).items() if k in _SHOWN_PARAMS}
        shown = " ".join(f"{k.rsplit('.', 1)[-1].lstrip('_')}={v}" for k, v in params.items())
        return f"[sweep] {self.stage} {trial.trial_id} ({shown})" if shown else f"[sweep] {trial}"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.time()
        print(f"{self._name(trial)} started", flush=True)

    def _end(self, trial, what: str) -> None:
        self.ended += 1
        took = time.time() - self.started.get(trial.trial_id, time.time())
        print(
            f"{self._name(trial)} {what} after {int(took) // 60}:{int(took) % 60:02d} "
            # counted since this command started: a resumed stage's earlier trials are not seen
            f"({self.ended} ended in this invocation; the stage has {self.num_trials})",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        m = trial.last_result or {}
        f1 = [m.get(f"{phase}/f1") for phase in ("burn_in", "final")]
        scores = " -> ".join("–" if v is None else f"{100 * v:.1f}" for v in f1)
        done = any(v is not None for v in f1)
        self._end(trial, f"finished, test F1@50 {scores}" if done else "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        # Tune's own error line is off (tune_console.py); its traceback is still logged above
        name = os.path.basename(trial.error_file) if trial.error_file else None
        where = f"{trial.path}/{name}" if name else f"the trial's directory {trial.path}"
        self._end(trial, f"FAILED, traceback in {where}")


# the parameters a trial's console line names (the stage's grid keys and variants)
_SHOWN_PARAMS = (
    "_variant",
    "run.seed",
    "objectives.alpha",
    "schedule.burn_in_epochs",
    "distill.p",
    "distill.ema",
)


# ============================================================================================
# 3. One stage = one Tune experiment (new or restored)
# ============================================================================================


def stage_param_space(stage: Stage, search_space: dict[str, Any] | None = None) -> dict[str, Any]:
    space: dict[str, Any] = dict(stage.fixed)
    space.update({k: tune.grid_search(list(v)) for k, v in stage.grid.items()})
    space.update(search_space or {})
    return space


def stage_tune_config(stage: Stage, max_concurrent: int, search_alg, scheduler) -> tune.TuneConfig:
    searched = search_alg is not None or scheduler is not None
    return tune.TuneConfig(
        # the one objective of the searcher and the scheduler; a grid stage has neither (and no
        # per-epoch validation to report it)
        metric=OBJECTIVE if searched else None,
        mode=MODE if searched else None,
        num_samples=stage.num_samples or 1,
        search_alg=search_alg,
        scheduler=scheduler,
        max_concurrent_trials=max_concurrent,
    )


def _epochs_trained(stage: Stage, params: dict[str, Any], metrics: dict[str, Any]) -> int:
    """Epochs this trial trained: its last reported epoch minus where its branch started (a trial
    ASHA stopped trained fewer than the stage plans)."""
    if not isinstance(metrics.get("epoch"), (int, float)):
        return stage.epochs_per_trial
    start = int(params.get("schedule.burn_in_epochs", 0)) if stage.branch_key is not None else 0
    return max(0, int(metrics["epoch"]) - start)


def stored_trials(exp_path: str, storage_fs=None) -> dict[str, tuple[str, str]]:
    """Trial path -> (trial id, status) as the experiment state on storage has it, i.e. as a
    restore sees it: after an interrupt (Ctrl+C, SIGUSR1) a trial that was still training is
    unfinished (PENDING) there, while Tune's in-memory status reads TERMINATED."""
    try:
        analysis = tune.ExperimentAnalysis(exp_path, storage_filesystem=storage_fs)
    except Exception as exc:  # no experiment state written (the stage failed to start)
        print(f"[sweep] no stored trial states in {exp_path}: {exc}", flush=True)
        return {}
    return {os.path.basename(t.path): (t.trial_id, t.status) for t in analysis.trials}


def results_of(result_grid, stage: Stage, runs_root: str, stored: dict) -> list[dict[str, Any]]:
    """One JSON-able row per trial of a ``ResultGrid``: params, status, last metrics, Train run."""
    rows = []
    for r in result_grid:
        trial_id, status = stored.get(os.path.basename(r.path), (None, "UNKNOWN"))
        params = dict(r.config or {})
        metrics = {
            k: v
            for k, v in (r.metrics or {}).items()
            if isinstance(v, (int, float, str, bool)) or v is None
        }
        trial_id = trial_id or metrics.get("trial_id")
        rows.append(
            {
                "trial_id": trial_id,
                "status": status,
                "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}"[:2000],
                "params": params,
                "metrics": metrics,
                "train_run": f"{runs_root}/{stage.name}-{trial_id}",
                "time_total_s": metrics.get("time_total_s"),
                "epochs_trained": _epochs_trained(stage, params, metrics),
            }
        )
    rows.sort(key=lambda t: str(t["trial_id"]))
    return rows


def run_stage(
    stage: Stage,
    *,
    root: str,
    sweep: dict[str, Any],
    res: TrialResources,
    max_concurrent: int,
    search_space: dict[str, Any] | None = None,
    search_alg=None,
    scheduler=None,
    max_failures: int = 0,
    stop_after_trials: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one stage and write ``<root>/<stage>/results.json``; returns its content.
    A stage whose results.json says complete is not run again."""
    global _STOP_AFTER_TRIALS
    results_uri = join(root, stage.name, RESULTS_FILE)
    settings = sweep_settings(sweep)  # the storage: section, for files, trials and Tune alike
    if exists(results_uri, settings):
        stored = read_json(results_uri, settings)
        if stored.get("complete"):
            print(f"[sweep] stage {stage.name}: finished before, reusing {results_uri}", flush=True)
            return stored
    storage_path, storage_fs = tune_storage(root, settings)
    exp_path = f"{storage_path}/{stage.name}"
    fn = trainable(sweep, res)
    _STOP_AFTER_TRIALS = stop_after_trials
    # Tune's own console lines off while it restores, runs and is read back (tune_console.py)
    with tune_console():
        if tune.Tuner.can_restore(exp_path, storage_filesystem=storage_fs):
            print(f"[sweep] stage {stage.name}: resuming {exp_path}", flush=True)
            tuner = tune.Tuner.restore(
                exp_path,
                fn,
                resume_unfinished=True,
                resume_errored=True,
                storage_filesystem=storage_fs,
            )
        else:
            print(
                f"[sweep] stage {stage.name}: {stage.num_trials} trial(s), up to {max_concurrent} "
                f"at once, each {res.to_dict()}; live TensorBoard of its trials: "
                f"tensorboard --logdir {sweep['runs']}",
                flush=True,
            )
            tuner = tune.Tuner(
                fn,
                param_space=stage_param_space(stage, search_space),
                tune_config=stage_tune_config(stage, max_concurrent, search_alg, scheduler),
                run_config=tune.RunConfig(
                    name=stage.name,
                    storage_path=storage_path,
                    storage_filesystem=storage_fs,
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    callbacks=[StopAfterTrials(), TrialLines(stage.name, stage.num_trials)],
                    # Tune's status table every 30 s would bury the trials' epoch lines; TrialLines
                    # says when a trial starts and ends
                    verbose=0,
                ),
            )
        try:
            grid = tuner.fit()
        finally:
            _STOP_AFTER_TRIALS = None
        states = stored_trials(exp_path, storage_fs)
    trials = results_of(grid, stage, sweep["runs"], states)
    finished = sum(t["status"] == "TERMINATED" for t in trials)
    data = {
        "kind": sweep["kind"],
        "stage": stage.name,
        "sweep": sweep["name"],
        "complete": finished == stage.num_trials and not any(t["error"] for t in trials),
        "trials": trials,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(results_uri, data, settings)
    return data
