"""The default job over seeds: mean and 95 % t-interval per metric from the runs' summary.json.

Each run is the default job with only its seed and name changed, e.g. for seeds 0 1 2:

    for s in 0 1 2; do python -m diod_ray.train --set run.seed=$s run.name=default-seed$s; done
    python benchmarks/default_job_seeds.py ~/diod_ray_runs/default-seed{0,1,2}

Prints a Markdown table (docs/results.md, "The default job") and, last, one JSON line with every
cell (n, mean, sd, ci_low, ci_high; the statistics of diod_ray/sweeps/report/stats.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from diod_ray.sweeps.report.stats import fmt_cell, paired, summarise
from diod_ray.training.driver import METRIC_NAMES

# (label, path in summary.json, scale)
TEACHER = (
    ("kept candidates per frame, last epoch", ("teacher", "kept_per_frame"), 1.0),
    ("frames with a kept candidate, last epoch, %", ("teacher", "frames_with_kept"), 100.0),
    (
        "motion masks kept by the W_fg filter, last epoch, %",
        ("teacher", "motion_kept_share"),
        100.0,
    ),
    ("distillation epochs that kept no candidate", ("teacher", "epochs_without_candidates"), 1.0),
    (
        "kept candidates hitting a GT object at the switch, %",
        ("teacher", "burn_in", "precision"),
        100.0,
    ),
    ("kept candidates hitting a GT object at the end, %", ("teacher", "final", "precision"), 100.0),
)


def _get(d: dict[str, Any], path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return float(d) if isinstance(d, (int, float)) else None


def load(run_dir: str) -> dict[str, Any]:
    path = os.path.join(os.path.expanduser(run_dir), "summary.json")
    if not os.path.exists(path):
        raise SystemExit(f"error: {path}: not found (has the run finished?)")
    with open(path) as f:
        return json.load(f)


def _scaled(v: float | None, scale: float) -> float | None:
    return None if v is None else scale * v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories, one per seed")
    args = p.parse_args(argv)
    runs = [load(r) for r in args.runs]
    cells: dict[str, Any] = {}
    lines = [
        f"| phase (n = {len(runs)} seeds) | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for phase, label in (("burn_in", "end of burn-in"), ("final", "end of distillation")):
        row = []
        for m in METRIC_NAMES:
            s = summarise([_scaled(_get(r, (phase, m)), 100.0) for r in runs])
            cells[f"{phase}/{m}"] = s
            row.append(fmt_cell(s))
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    by_seed = {i: r for i, r in enumerate(runs)}
    gain = paired(
        {i: _scaled(_get(r, ("final", "f1")), 100.0) for i, r in by_seed.items()},
        {i: _scaled(_get(r, ("burn_in", "f1")), 100.0) for i, r in by_seed.items()},
    )
    cells["final-burn_in/f1"] = gain
    lines += ["", f"F1@50, end of distillation minus end of burn-in (paired): {fmt_cell(gain)}"]
    lines += ["", "| the teacher | value |", "|---|---|"]
    for label, path, scale in TEACHER:
        s = summarise([_scaled(_get(r, path), scale) for r in runs])
        cells["teacher/" + "/".join(path[1:])] = s
        lines.append(f"| {label} | {fmt_cell(s)} |")
    print("\n".join(lines))
    print(json.dumps({"runs": [r.get("run") for r in runs], "cells": cells}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
