"""The threshold-search table and the per-cell statistics CSV (``cells.csv``) of the sweep
reports; split from :mod:`diod_ray.sweeps.report`, which writes them."""

from __future__ import annotations

import csv
import io
from typing import Any

from diod_ray.sweeps.report import (
    METRICS,
    ablation_differences,
    ablation_rows,
    alpha_burnin_cells,
    completed,
    cost_section,
    fmt,
    metric,
    pct,
)
from diod_ray.sweeps.stats import summarise

# ============================================================================================
# Threshold p (Optuna)
# ============================================================================================


def threshold_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    trials = stages.get("search", {}).get("trials", [])
    ranked = sorted(trials, key=lambda t: -(metric(t, "val", "f1") or -1.0))
    out = [
        f"# Threshold p search (Optuna TPE + ASHA) — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`. "
        f"Optuna and ASHA select on {meta.get('asha', {}).get('metric', 'val/f1')} (the "
        "validation split; test F1 only reported); ASHA's clock is epochs of distillation, "
        f"grace period {meta.get('asha', {}).get('grace_period', '?')}, rungs "
        f"{meta.get('asha', {}).get('rungs', '?')}, max_t "
        f"{meta.get('asha', {}).get('max_t', '?')}. The paper uses p = 0.9 (EMA 0.996, α 0.3); "
        "it has no table over p.",
        "",
        "| rank | trial | p | EMA | α | status | last epoch | F1@50 burn-in | F1@50 final | fg-ARI | all-ARI | static recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(ranked, 1):
        p = t.get("params", {})
        m = t.get("metrics", {})
        status = t.get("status", "?")
        if completed(t) and metric(t, "final", "f1") is None:
            status = "stopped by ASHA"
        out.append(
            f"| {i} | {t.get('trial_id')} | {_g(p.get('distill.p'))} | {_g(p.get('distill.ema'))} | "
            f"{_g(p.get('objectives.alpha'))} | {status} | {m.get('epoch', '–')} | "
            f"{fmt(pct(metric(t, 'burn_in', 'f1')))} | {fmt(pct(metric(t, 'final', 'f1')))} | "
            f"{fmt(pct(metric(t, 'final', 'fg_ari')))} | {fmt(pct(metric(t, 'final', 'all_ari')))} | "
            f"{fmt(pct(metric(t, 'final', 'static_recall')))} |"
        )
    best = next((t for t in ranked if metric(t, "final", "f1") is not None), None)
    if best:
        out += [
            "",
            f"Best: `{ {k: v for k, v in best['params'].items() if not k.startswith('_')} }` "
            f"→ F1@50 {fmt(pct(metric(best, 'final', 'f1')))}",
        ]
    out += [""] + cost_section(meta, stages)
    return "\n".join(out)


def _g(v: Any) -> str:
    return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


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
