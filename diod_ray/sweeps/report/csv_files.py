"""``trials.csv`` (one row per trial: status, time, parameters, metrics) and ``cells.csv`` (one
row per table cell and metric: n, mean, sd, 95 % t-interval over seeds, and for ablations the
paired differences against the two baselines) of a sweep's report."""

from __future__ import annotations

import csv
import io
from typing import Any

from diod_ray.sweeps.report.ablations import ablation_differences, ablation_rows
from diod_ray.sweeps.report.alpha_burnin import alpha_burnin_cells
from diod_ray.sweeps.report.results import METRICS, pct
from diod_ray.sweeps.report.stats import summarise


def cells_csv(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    """One row per table cell and metric: n, mean, sd, 95 % t-interval over seeds (null where
    undefined); for ablations also the paired differences against the two baselines."""
    rows: list[dict[str, Any]] = []
    if meta["kind"] == "alpha_burnin":
        for (a, e), c in sorted(alpha_burnin_cells(stages).items()):
            for key in sorted(k for k in c if "/" in k):
                rows.append(
                    {"cell": f"alpha={a:g},burn_in={e}", "metric": key, **summarise(c[key])}
                )
    elif meta["kind"] == "ablations":
        table = ablation_rows(stages)
        for n, r in table.items():
            for m in METRICS:
                rows.append({"cell": n, "metric": f"final/{m}", **summarise(r[m])})
        for d in ablation_differences(table):
            rows.append({"cell": f"{d['row']} - {d['against']}", **d})
    else:
        for t in stages.get("search", {}).get("trials", []):
            for m in ("val/f1", "final/f1"):
                v = t.get("metrics", {}).get(m)
                rows.append({"cell": t.get("trial_id"), "metric": m, **summarise([pct(v)])})
    cols = ["cell", "metric", "n", "mean", "sd", "ci_low", "ci_high", "excludes_0"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def trials_csv(stages: dict[str, dict[str, Any]]) -> str:
    rows = []
    for stage_name, stage in stages.items():
        for t in stage["trials"]:
            row = {
                "stage": stage_name,
                "trial_id": t.get("trial_id"),
                "status": t.get("status"),
                "error": (t.get("error") or "")[:200],
                "time_total_s": t.get("time_total_s"),
                "epochs_trained": t.get("epochs_trained"),
                "train_run": t.get("train_run"),
            }
            row.update({f"param:{k}": v for k, v in sorted(t.get("params", {}).items())})
            row.update(
                {
                    k: v
                    for k, v in sorted(t.get("metrics", {}).items())
                    if k.startswith(("burn_in/", "final/", "val/"))
                    or k in ("epoch", "step", "loss")
                }
            )
            rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
