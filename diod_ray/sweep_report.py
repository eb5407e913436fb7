"""Sweep reports from stored results: Markdown tables laid out like the paper's Table 4, a CSV of
every trial and a PNG plot. Reads only ``sweep.json`` and ``<stage>/results.json`` (no Ray), so
``python sweeps/report.py DIR`` regenerates everything from a finished or interrupted sweep.

Layout of a sweep directory ``<storage>/<name>`` (local path or s3://)::

    sweep.json              kind, preset, overrides, plan, trial resources
    <stage>/                the stage's Ray Tune experiment, plus results.json (one per stage)
    runs/<stage>-<trial>/   the Train run of each trial (checkpoints, kept/, tensorboard/)
    table.md trials.csv <kind>.png
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import textwrap
from collections import defaultdict
from typing import Any

from diod_ray.sweep_plan import (
    ABLATION_LABELS,
    PAPER_TABLE_4A,
    PAPER_TABLE_4B,
    PAPER_TABLE_4C,
    device_hours,
)

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
CSV_FILE = "trials.csv"
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


class ReportError(ValueError):
    """A stored sweep is missing or malformed; the message names the file."""


# ============================================================================================
# Storage: local path or s3:// (through the project's storage helpers)
# ============================================================================================


def _fs(uri: str):
    from diod_ray.data.storage import filesystem_for

    return filesystem_for(uri)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def exists(uri: str) -> bool:
    from diod_ray.data.storage import exists as _exists

    fs, path = _fs(uri)
    return _exists(fs, path)


def read_json(uri: str) -> dict[str, Any]:
    from diod_ray.data.storage import read_bytes

    fs, path = _fs(uri)
    try:
        return json.loads(read_bytes(fs, path, uri).decode())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{uri}: not valid JSON ({exc})") from exc
    except Exception as exc:
        raise ReportError(f"{uri}: cannot read ({exc})") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write a report file; reports are derived data, so a regenerated one replaces the old."""
    from diod_ray.data.storage import atomic_write_bytes

    fs, path = _fs(uri)
    atomic_write_bytes(fs, path, data, uri, overwrite=True)


def write_json(uri: str, data: dict[str, Any]) -> None:
    write_bytes(uri, json.dumps(data, indent=2, default=str).encode())


# ============================================================================================
# Reading results
# ============================================================================================


def load_sweep(root: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(sweep.json, {stage: results.json})`` of a sweep directory; stages not run yet are absent."""
    meta_uri = join(root, SWEEP_FILE)
    if not exists(meta_uri):
        raise ReportError(f"{meta_uri}: no sweep here (sweep.json missing)")
    meta = read_json(meta_uri)
    for key in ("kind", "plan"):
        if key not in meta:
            raise ReportError(f"{meta_uri}: field {key!r} missing")
    stages = {}
    for stage in meta["plan"]["stages"]:
        uri = join(root, stage["name"], RESULTS_FILE)
        if exists(uri):
            data = read_json(uri)
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


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


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
        waited = float(m.get("sweep/slot_wait_s") or 0.0)  # queued for a slot (sweep_slots)
        rates.append(max(t["time_total_s"] - evals - waited, 0.0) / t["epochs_trained"])
    return statistics.median(rates) if rates else None


# ============================================================================================
# CSV of every trial
# ============================================================================================


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


# ============================================================================================
# Cost: what the reuse saved
# ============================================================================================


def cost_section(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> list[str]:
    ep = meta["plan"]["epochs"]
    kind = meta.get("resources", {}).get("device", "CPU")
    per_trial = meta.get("resources", {}).get("per_trial", {})
    lines = [
        "## Cost and reuse",
        "",
        f"- epochs trained: {ep['burn_in']} burn-in + {ep['distill']} distillation = "
        f"{ep['burn_in'] + ep['distill']}; the naive grid (every trial its own burn-in) trains "
        f"{ep['naive_burn_in']} + {ep['naive_distill']} = {ep['naive_burn_in'] + ep['naive_distill']}"
        f" → **{ep['saved']} epochs saved**",
    ]
    burn = stages.get("burn_in")
    rate_b = seconds_per_epoch(burn) if burn else None
    rate_d = None
    for name, stage in stages.items():
        if name != "burn_in":
            rate_d = seconds_per_epoch(stage)
    if rate_b is not None and ep["saved"]:
        hours = device_hours(ep["saved"], rate_b, per_trial, kind)
        lines.append(
            f"- measured {rate_b:.2f} s per burn-in epoch"
            + (f", {rate_d:.2f} s per distillation epoch" if rate_d else "")
            + " (trial wall time minus in-run evaluations, over epochs; start-up included), "
            f"{per_trial.get(kind, 0):g} {kind}(s) per trial → the reuse saved "
            f"**{hours:.3f} {kind}-hours** ({ep['saved'] * rate_b / 60:.1f} trial-minutes)"
        )
    elif ep["saved"]:
        lines.append("- no finished burn-in trials yet: seconds per epoch not measured")
    return lines + [""]


# ============================================================================================
# Table 4(c): alpha x burn-in
# ============================================================================================


def alpha_burnin_cells(stages: dict[str, dict[str, Any]]) -> dict[tuple[float, int], dict]:
    """(alpha, E) -> per-seed lists of metrics from the distillation branches (which evaluate the
    kept burn-in checkpoint at their start, ``burn_in/*``, and after distillation, ``final/*``)."""
    cells: dict[tuple[float, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in stages.get("distill", {}).get("trials", []):
        p = t.get("params", {})
        key = (float(p["objectives.alpha"]), int(p["schedule.burn_in_epochs"]))
        cell = cells[key]
        cell["trials"].append(t.get("trial_id"))
        cell["done"].append(completed(t))
        for phase in ("burn_in", "final"):
            for m in METRICS:
                cell[f"{phase}/{m}"].append(pct(metric(t, phase, m)))
    return cells


def alpha_burnin_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    cells = alpha_burnin_cells(stages)
    grid = next(s for s in meta["plan"]["stages"] if s["name"] == "distill")["grid"]
    alphas = [float(a) for a in grid["objectives.alpha"]]
    lengths = [int(e) for e in grid["schedule.burn_in_epochs"]]
    seeds = grid.get("run.seed", [0])
    distill = next(s for s in meta["plan"]["stages"] if s["name"] == "distill")["fixed"][
        "schedule.distill_epochs"
    ]
    out = [
        f"# Table 4(c): alpha × burn-in duration — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`; "
        f"{len(seeds)} seed(s) {seeds}; {distill} distillation epochs.",
        "Each cell: F1@50 (%) at the end of burn-in → after distillation "
        "(mean over seeds, ±std with several seeds).",
        "",
        "| α \\ burn-in (epochs) | " + " | ".join(str(e) for e in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for a in alphas:
        row = [f"{a:g}"]
        for e in lengths:
            c = cells.get((a, e))
            if not c:
                row.append("not run")
                continue
            b = fmt(*mean_std(c["burn_in/f1"]))
            d = fmt(*mean_std(c["final/f1"]))
            paper = PAPER_TABLE_4C.get((a, e))
            cell = f"{b} → {d}"
            if paper:
                cell += f" (paper {paper[0]} → {paper[1]})"
            row.append(cell)
        out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        "Paper, TRI-PD test set, 500 distillation epochs (F1@50 %, end of burn-in → after "
        "distillation):",
        "",
        "| α \\ burn-in (epochs) | 200 | 300 | 400 |",
        "|---|---|---|---|",
    ]
    for a in (0.2, 0.3, 0.4):
        out.append(
            f"| {a} | "
            + " | ".join(
                f"{PAPER_TABLE_4C[(a, e)][0]} → {PAPER_TABLE_4C[(a, e)][1]}"
                for e in (200, 300, 400)
            )
            + " |"
        )
    out += [
        "",
        "All metrics per cell (%, mean over seeds; burn-in → after distillation):",
        "",
        "| α | burn-in | F1@50 | Δ F1 | fg-ARI | all-ARI | static recall | moving recall | trials ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in alphas:
        for e in lengths:
            c = cells.get((a, e))
            if not c:
                continue

            def pair(m: str, c=c) -> str:
                return (
                    f"{fmt(mean_std(c[f'burn_in/{m}'])[0])} → {fmt(mean_std(c[f'final/{m}'])[0])}"
                )

            b, d = mean_std(c["burn_in/f1"])[0], mean_std(c["final/f1"])[0]
            delta = fmt(d - b) if b is not None and d is not None else "–"
            out.append(
                f"| {a:g} | {e} | {pair('f1')} | {delta} | {pair('fg_ari')} | {pair('all_ari')} | "
                f"{pair('static_recall')} | {pair('moving_recall')} | {sum(c['done'])}/{len(c['done'])} |"
            )
    out += [""] + cost_section(meta, stages)
    return "\n".join(out)


def alpha_burnin_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    """Heatmaps over α × burn-in: F1 at the end of burn-in, after distillation, and the gain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = alpha_burnin_cells(stages)
    grid = next(s for s in meta["plan"]["stages"] if s["name"] == "distill")["grid"]
    alphas = [float(a) for a in grid["objectives.alpha"]]
    lengths = [int(e) for e in grid["schedule.burn_in_epochs"]]
    mats = {k: np.full((len(alphas), len(lengths)), np.nan) for k in ("burn_in", "final", "gain")}
    for i, a in enumerate(alphas):
        for j, e in enumerate(lengths):
            c = cells.get((a, e))
            if not c:
                continue
            b, d = mean_std(c["burn_in/f1"])[0], mean_std(c["final/f1"])[0]
            mats["burn_in"][i, j] = np.nan if b is None else b
            mats["final"][i, j] = np.nan if d is None else d
            if b is not None and d is not None:
                mats["gain"][i, j] = d - b
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 0.9 * len(alphas) + 2.2))
    titles = {
        "burn_in": "F1@50 (%) end of burn-in",
        "final": "F1@50 (%) after distillation",
        "gain": "gain (distillation − burn-in)",
    }
    shared = [mats["burn_in"], mats["final"]]
    finite = [m[np.isfinite(m)] for m in shared]
    lo = min((float(f.min()) for f in finite if f.size), default=0.0)
    hi = max((float(f.max()) for f in finite if f.size), default=1.0)
    for ax, key in zip(axes, ("burn_in", "final", "gain")):
        m = mats[key]
        kwargs = {"vmin": lo, "vmax": hi, "cmap": "viridis"} if key != "gain" else {"cmap": "RdBu"}
        if key == "gain" and np.isfinite(m).any():
            span = max(1e-6, float(np.nanmax(np.abs(m))))
            kwargs.update(vmin=-span, vmax=span)
        im = ax.imshow(m, aspect="auto", **kwargs)
        ax.set_xticks(range(len(lengths)), [str(e) for e in lengths])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("burn-in (epochs)")
        ax.set_ylabel("α")
        ax.set_title(titles[key], fontsize=10)
        for i in range(len(alphas)):
            for j in range(len(lengths)):
                if key == "final" and np.isfinite(mats["burn_in"][i, j]) and np.isfinite(m[i, j]):
                    text = f"{mats['burn_in'][i, j]:.1f}→{m[i, j]:.1f}"
                else:
                    text = "–" if not np.isfinite(m[i, j]) else f"{m[i, j]:.1f}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    bbox={"facecolor": "black", "alpha": 0.35, "pad": 1, "linewidth": 0},
                )
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Table 4(c) reproduction — {meta.get('name', '')} ({meta.get('preset')})")
    fig.tight_layout()
    return _png(fig)


# ============================================================================================
# Table 4(a) and 4(b): ablations
# ============================================================================================


def ablation_rows(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, list]]:
    """Row name -> metric lists over seeds. 'end_of_burn_in' is the burn_in/* evaluation that the
    'final' branches make of the shared burn-in checkpoint at their start."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in stages.get("variants", {}).get("trials", []):
        v = t.get("params", {}).get("_variant")
        for m in METRICS:
            rows[v][m].append(pct(metric(t, "final", m)))
        rows[v]["done"].append(completed(t))
        if v == "final":
            for m in METRICS:
                rows["end_of_burn_in"][m].append(pct(metric(t, "burn_in", m)))
            rows["end_of_burn_in"]["done"].append(completed(t))
    return rows


def ablations_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    rows = ablation_rows(stages)
    fixed = next(s for s in meta["plan"]["stages"] if s["name"] == "variants")["fixed"]
    out = [
        f"# Table 4(a) and 4(b): ablations — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`; burn-in "
        f"{fixed['schedule.burn_in_epochs']} epochs (one run per seed, shared by every variant), "
        f"then {fixed['schedule.distill_epochs']} distillation epochs per variant. "
        "Metrics in %, mean over seeds. Paper: TRI-PD test set.",
        "",
    ]

    def table(title: str, names: list[str], paper: dict[str, float]) -> list[str]:
        lines = [
            f"## {title}",
            "",
            "| method | F1@50 | paper F1@50 | fg-ARI | all-ARI | static recall | trials ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = rows.get(n)
            if not r:
                lines.append(f"| {ABLATION_LABELS[n]} | not run | {paper.get(n, '–')} | | | | |")
                continue
            lines.append(
                f"| {ABLATION_LABELS[n]} | {fmt(*mean_std(r['f1']))} | {paper.get(n, '–')} | "
                f"{fmt(mean_std(r['fg_ari'])[0])} | {fmt(mean_std(r['all_ari'])[0])} | "
                f"{fmt(mean_std(r['static_recall'])[0])} | {sum(r['done'])}/{len(r['done'])} |"
            )
        return lines + [""]

    out += table("(a) design choices", ["one_to_one", "no_motion_masks", "final"], PAPER_TABLE_4A)
    b = table(
        "(b) distillation vs offline pseudo-labelling",
        ["end_of_burn_in", "more_burn_in", "offline", "final"],
        PAPER_TABLE_4B,
    )
    out += [line.replace("| DIOD (final setting) |", "| DIOD |") for line in b]
    if "more_burn_in" in rows:
        out += [
            "The control row (not in the paper) spends the branch's epochs on more burn-in, with no "
            "teacher and the same learning rate; DIOD minus the control is the gain from "
            "distillation itself, DIOD minus the end of burn-in also contains the gain from "
            "training longer.",
            "",
        ]
    out += cost_section(meta, stages)
    return "\n".join(out)


def ablations_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = ablation_rows(stages)
    groups = [
        ("(a) design choices", ["one_to_one", "no_motion_masks", "final"], PAPER_TABLE_4A),
        (
            "(b) distillation vs offline",
            ["end_of_burn_in", "more_burn_in", "offline", "final"],
            PAPER_TABLE_4B,
        ),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (title, names, paper) in zip(axes, groups):
        x = np.arange(len(names))
        ours = [mean_std(rows[n]["f1"]) if n in rows else (None, None) for n in names]
        vals = [np.nan if m is None else m for m, _ in ours]
        errs = [0.0 if s is None else s for _, s in ours]
        ax.bar(x - 0.2, vals, 0.4, yerr=errs, label="ours (F1@50 %)", color="tab:blue")
        ax.bar(
            x + 0.2,
            [paper.get(n, np.nan) for n in names],
            0.4,
            label="paper, TRI-PD",
            color="tab:gray",
        )
        for xi, v in zip(x, vals):
            if np.isfinite(v):
                ax.text(xi - 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        labels = [textwrap.fill(ABLATION_LABELS[n], 16) for n in names]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("F1@50 (%)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Table 4(a-b) reproduction — {meta.get('name', '')} ({meta.get('preset')})")
    fig.tight_layout()
    return _png(fig)


# ============================================================================================
# Threshold p (Optuna)
# ============================================================================================


def threshold_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    trials = stages.get("search", {}).get("trials", [])
    ranked = sorted(trials, key=lambda t: -(metric(t, "final", "f1") or -1.0))
    out = [
        f"# Threshold p search (Optuna TPE + ASHA) — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`. "
        "Objective: final/f1 (max); ASHA on val/f1 with time in epochs, grace period "
        f"{meta.get('asha', {}).get('grace_period', '?')} (past burn-in), max_t "
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


def threshold_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = stages.get("search", {}).get("trials", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    done = [(t["params"].get("distill.p"), pct(metric(t, "final", "f1"))) for t in trials]
    xs = [p for p, f in done if f is not None and p is not None]
    ys = [f for p, f in done if f is not None and p is not None]
    ax.scatter(xs, ys, label="finished (final F1@50)")
    stopped = [
        t
        for t in trials
        if metric(t, "final", "f1") is None and t.get("params", {}).get("distill.p") is not None
    ]
    if stopped:
        ax.scatter(
            [t["params"]["distill.p"] for t in stopped],
            [pct(t.get("metrics", {}).get("val/f1")) or 0.0 for t in stopped],
            marker="x",
            color="tab:red",
            label="stopped early (last val/f1)",
        )
    ax.axvline(0.9, color="gray", linestyle="--", linewidth=1, label="paper p = 0.9")
    ax.set_xlabel("threshold p")
    ax.set_ylabel("F1@50 (%)")
    ax.set_title(f"Optuna over p — {meta.get('name', '')}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# ============================================================================================
# Entry point
# ============================================================================================

RENDERERS = {
    "alpha_burnin": (alpha_burnin_markdown, alpha_burnin_plot),
    "ablations": (ablations_markdown, ablations_plot),
    "threshold_p": (threshold_markdown, threshold_plot),
}


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(root: str) -> dict[str, str]:
    """(Re)write table.md, trials.csv and <kind>.png of the sweep at ``root``; returns their URIs."""
    meta, stages = load_sweep(root)
    kind = meta["kind"]
    if kind not in RENDERERS:
        raise ReportError(
            f"{join(root, SWEEP_FILE)}: unknown kind {kind!r}; known: {list(RENDERERS)}"
        )
    to_md, to_png = RENDERERS[kind]
    out = {
        "table": join(root, TABLE_FILE),
        "csv": join(root, CSV_FILE),
        "plot": join(root, f"{kind}.png"),
    }
    write_bytes(out["table"], (to_md(meta, stages) + "\n").encode())
    write_bytes(out["csv"], trials_csv(stages).encode())
    write_bytes(out["plot"], to_png(meta, stages))
    return out
