"""A sweep's stored results, read for its report: ``sweep.json`` and each stage's
``results.json`` (no Ray), the report's file names, and the small helpers every table shares
(a trial's metric, percentages, formatting, seconds per epoch).

Layout of a sweep directory ``<storage>/<name>`` (local path or s3://)::

    sweep.json              kind, preset, overrides, plan, trial resources
    premise.json            the data's premise, measured before the first trial
    <stage>/                the stage's Ray Tune experiment, plus results.json (one per stage)
    runs/<stage>-<trial>/   the Train run of each trial (checkpoints, kept/, tensorboard/)
    table.md trials.csv cells.csv gates.csv <kind>.png     the report (:mod:`.files`)
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from diod_ray.sweeps.report.stats import summarise
from diod_ray.sweeps.store import StoreError, exists, join, read_json

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
CSV_FILE = "trials.csv"
CELLS_FILE = "cells.csv"
GATES_FILE = "gates.csv"  # the preconditions each trial measured at its switch (issue 21)
PREMISE_FILE = "premise.json"  # the data's premise, measured before the first trial
METRICS = (
    "f1",
    "fg_ari",
    "all_ari",
    "static_recall",
    "moving_recall",
    "precision",
    "recall",
    "mbo",
)

ReportError = StoreError  # a stored sweep is missing or malformed; the message names the file


def load_sweep(root: str, settings=None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(sweep.json, {stage: results.json})`` of a sweep directory; stages not run yet are absent.
    ``meta["premise"]``: premise.json's content, None for a sweep from before it existed.
    ``settings``: the config's ``storage:`` section (else the environment's endpoint)."""
    meta_uri = join(root, SWEEP_FILE)
    if not exists(meta_uri, settings):
        raise ReportError(f"{meta_uri}: no sweep here (sweep.json missing)")
    meta = read_json(meta_uri, settings)
    for key in ("kind", "plan"):
        if key not in meta:
            raise ReportError(f"{meta_uri}: field {key!r} missing")
    premise_uri = join(root, PREMISE_FILE)
    meta["premise"] = read_json(premise_uri, settings) if exists(premise_uri, settings) else None
    stages = {}
    for stage in meta["plan"]["stages"]:
        uri = join(root, stage["name"], RESULTS_FILE)
        if exists(uri, settings):
            data = read_json(uri, settings)
            if not isinstance(data.get("trials"), list):
                raise ReportError(f"{uri}: field 'trials' missing or not a list")
            stages[stage["name"]] = data
    return meta, stages


def completed(trial: dict[str, Any]) -> bool:
    return trial.get("status") == "TERMINATED" and not trial.get("error")


def metric(trial: dict[str, Any], phase: str, name: str) -> float | None:
    v = trial.get("metrics", {}).get(f"{phase}/{name}")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def pct(v: float | None) -> float | None:
    """Metrics are fractions in [0, 1]; the paper prints percentages."""
    return None if v is None else 100.0 * v


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    st = summarise(values)
    return st["mean"], st["sd"]


def fmt(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if std is None else f"{v:.1f}±{std:.1f}"


def seconds_per_epoch(stage: dict[str, Any]) -> float | None:
    """Median wall seconds per trained epoch over a stage's finished trials: trial wall time
    minus the in-run evaluations (``burn_in/seconds``, ``final/seconds``), over the epochs
    trained. Trial start-up stays in, so it errs on the high side."""
    rates = []
    for t in stage.get("trials", []):
        if not (completed(t) and t.get("time_total_s") and t.get("epochs_trained")):
            continue
        m = t.get("metrics", {})
        evals = sum(float(m.get(f"{p}/seconds") or 0.0) for p in ("burn_in", "final"))
        if m.get("burn_in/seconds") == m.get("final/seconds"):
            evals = float(m.get("final/seconds") or 0.0)  # burn-in only: one evaluation, copied
        rates.append(max(t["time_total_s"] - evals, 0.0) / t["epochs_trained"])
    return statistics.median(rates) if rates else None


def by_seed(rows: dict[str, list], key: str) -> dict[int, float | None]:
    return dict(zip(rows["seed"], rows[key]))
