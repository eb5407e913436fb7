"""Sweep reports from stored results: Markdown tables laid out like the paper's Table 4, a CSV of
every trial and a PNG plot. Reads only ``sweep.json`` and ``<stage>/results.json`` (no Ray), so
``python sweeps/report.py DIR`` regenerates everything from a finished or interrupted sweep.

Layout of a sweep directory ``<storage>/<name>`` (local path or s3://)::

    sweep.json              kind, preset, overrides, plan, trial resources
    <stage>/                the stage's Ray Tune experiment, plus results.json (one per stage)
    runs/<stage>-<trial>/   the Train run of each trial (checkpoints, kept/, tensorboard/)
    table.md trials.csv cells.csv <kind>.png
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from typing import Any

from diod_ray.preconditions import GATES, from_metrics, gate_results, verdict
from diod_ray.sweeps.paper import (
    ABLATION_LABELS,
    PAPER_TABLE_4A,
    PAPER_TABLE_4B,
    PAPER_TABLE_4C,
)
from diod_ray.sweeps.plan import device_hours
from diod_ray.sweeps.stats import METHOD_NOTE, fmt_cell, paired, summarise
from diod_ray.sweeps.store import StoreError, exists, join, read_json

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
CSV_FILE = "trials.csv"
CELLS_FILE = "cells.csv"
GATES_FILE = "gates.csv"  # the preconditions each trial measured at its switch (issue 21)
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


# ============================================================================================
# Reading results
# ============================================================================================


def load_sweep(root: str, settings=None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(sweep.json, {stage: results.json})`` of a sweep directory; stages not run yet are absent.
    ``settings``: the config's ``storage:`` section (else the environment's endpoint)."""
    meta_uri = join(root, SWEEP_FILE)
    if not exists(meta_uri, settings):
        raise ReportError(f"{meta_uri}: no sweep here (sweep.json missing)")
    meta = read_json(meta_uri, settings)
    for key in ("kind", "plan"):
        if key not in meta:
            raise ReportError(f"{meta_uri}: field {key!r} missing")
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


# ============================================================================================
# Cost: what the reuse saved
# ============================================================================================


def cost_section(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> list[str]:
    ep = meta["plan"]["epochs"]
    kind = meta.get("resources", {}).get("device", "CPU")
    per_trial = meta.get("resources", {}).get("per_trial", {})
    per_trial = per_trial.get("total", per_trial)  # {"driver", "workers", "total"}
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
        cell["seed"].append(p.get("run.seed", 0))
        cell["gates"].append(from_metrics(t.get("metrics", {})))
        for phase in ("burn_in", "final"):
            for m in METRICS:
                cell[f"{phase}/{m}"].append(pct(metric(t, phase, m)))
    return cells


def alpha_burnin_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    """Table 4(c) of a sweep: F1@50 per (alpha, burn-in) cell beside the paper's, every metric
    per cell with DIOD's paired gain, the preconditions per cell and seed, and the cost."""
    cells = alpha_burnin_cells(stages)
    distill = next(s for s in meta["plan"]["stages"] if s["name"] == "distill")
    grid = distill["grid"]
    alphas = [float(a) for a in grid["objectives.alpha"]]
    lengths = [int(e) for e in grid["schedule.burn_in_epochs"]]
    seeds = grid.get("run.seed", [0])
    out = [
        f"# Table 4(c): alpha × burn-in duration — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`; "
        f"{len(seeds)} seed(s) {seeds}; {distill['fixed']['schedule.distill_epochs']} "
        "distillation epochs.",
        "Each cell: F1@50 (%) at the end of burn-in → after distillation. " + METHOD_NOTE,
        "",
    ]
    out += _f1_grid(cells, alphas, lengths)
    out += _paper_table_4c()
    out += _all_metrics_per_cell(cells, alphas, lengths)
    gate_rows = [
        (f"α {a:g}, burn-in {e}, seed {seed}", values)
        for (a, e), c in sorted(cells.items())
        for seed, values in zip(c["seed"], c["gates"])
    ]
    out += [""] + preconditions_section(gate_rows, "cell and seed", "Δ F1")
    out += cost_section(meta, stages)
    return "\n".join(out)


def _f1_grid(cells: dict, alphas: list[float], lengths: list[int]) -> list[str]:
    """α rows × burn-in columns: our F1@50 at the end of burn-in → after distillation, with the
    paper's where it has the cell."""
    out = [
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
            b = fmt_cell(summarise(c["burn_in/f1"]))
            d = fmt_cell(summarise(c["final/f1"]))
            paper = PAPER_TABLE_4C.get((a, e))
            cell = f"{b} → {d}"
            if paper:
                cell += f" (paper {paper[0]} → {paper[1]})"
            row.append(cell)
        out.append("| " + " | ".join(row) + " |")
    return out


def _paper_table_4c() -> list[str]:
    out = [
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
    return out


def _all_metrics_per_cell(cells: dict, alphas: list[float], lengths: list[int]) -> list[str]:
    """One row per run cell: every metric burn-in → after distillation and the paired F1 gain
    (labelled "untestable: <gates>" when a seed's burn-in failed a gate)."""
    out = [
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

            gain = paired(_by_seed(c, "final/f1"), _by_seed(c, "burn_in/f1"))
            delta = fmt_cell(gain) + (" *" if gain["excludes_0"] else "")
            delta = _with_label(delta, untestable_label(dict(zip(c["seed"], c["gates"]))))
            out.append(
                f"| {a:g} | {e} | {pair('f1')} | {delta} | {pair('fg_ari')} | {pair('all_ari')} | "
                f"{pair('static_recall')} | {pair('moving_recall')} | {sum(c['done'])}/{len(c['done'])} |"
            )
    return out


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
        rows[v]["seed"].append(t.get("params", {}).get("run.seed", 0))
        if v == "final":
            for m in METRICS:
                rows["end_of_burn_in"][m].append(pct(metric(t, "burn_in", m)))
            rows["end_of_burn_in"]["done"].append(completed(t))
            rows["end_of_burn_in"]["seed"].append(t.get("params", {}).get("run.seed", 0))
    return rows


def _by_seed(rows: dict[str, list], key: str) -> dict[int, float | None]:
    return dict(zip(rows["seed"], rows[key]))


def _diff(rows: dict[str, dict[str, list]], name: str, against: str, label: str = "") -> str:
    """The paired F1@50 difference of row ``name`` against row ``against``; DIOD's (``final``)
    carries ``label`` ("untestable: <gates>") when its burn-in failed the preconditions."""
    if name == against or name not in rows or against not in rows:
        return "–"
    d = paired(_by_seed(rows[name], "f1"), _by_seed(rows[against], "f1"))
    cell = fmt_cell(d) + (" *" if d["excludes_0"] else "")
    return _with_label(cell, label) if name == "final" else cell


def ablation_differences(rows: dict[str, dict[str, list]]) -> list[dict[str, Any]]:
    """Paired F1@50 differences of every row against the end of burn-in and the control."""
    out = []
    for n in rows:
        for against in ("end_of_burn_in", "more_burn_in"):
            if n != against and against in rows:
                d = paired(_by_seed(rows[n], "f1"), _by_seed(rows[against], "f1"))
                out.append({"row": n, "against": against, "metric": "f1", **d})
    return out


def ablations_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    rows = ablation_rows(stages)
    fixed = next(s for s in meta["plan"]["stages"] if s["name"] == "variants")["fixed"]
    out = [
        f"# Table 4(a) and 4(b): ablations — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`; burn-in "
        f"{fixed['schedule.burn_in_epochs']} epochs (one run per seed, shared by every variant), "
        f"then {fixed['schedule.distill_epochs']} distillation epochs per variant. "
        "Metrics in % on the test split. Paper: TRI-PD test set. " + METHOD_NOTE,
        "Δ columns: paired (same seed) difference of F1@50 against the row named, mean "
        "[95 % t-interval] (n pairs); * marks an interval that excludes 0.",
        "",
    ]

    def table(title: str, names: list[str], paper: dict[str, float]) -> list[str]:
        lines = [
            f"## {title}",
            "",
            "| method | F1@50 | paper F1@50 | fg-ARI | all-ARI | static recall | trials ok |"
            " Δ vs end of burn-in | Δ vs more burn-in |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = rows.get(n)
            if not r:
                lines.append(
                    f"| {ABLATION_LABELS[n]} | not run | {paper.get(n, '–')} | | | | | | |"
                )
                continue
            lines.append(
                f"| {ABLATION_LABELS[n]} | {fmt_cell(summarise(r['f1']))} | {paper.get(n, '–')} | "
                f"{fmt_cell(summarise(r['fg_ari']))} | {fmt_cell(summarise(r['all_ari']))} | "
                f"{fmt_cell(summarise(r['static_recall']))} | {sum(r['done'])}/{len(r['done'])} | "
                f"{_diff(rows, n, 'end_of_burn_in', label)} | "
                f"{_diff(rows, n, 'more_burn_in', label)} |"
            )
        return lines + [""]

    # DIOD's comparisons test the claim only on a burn-in that passes the gates (issue 21)
    diod_gates = _gates_by_seed(stages, "final")
    label = untestable_label(diod_gates)

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
    gate_rows = [(f"seed {seed}", values) for seed, values in sorted(diod_gates.items())]
    out += teacher_activity_section(stages)
    out += preconditions_section(gate_rows, "DIOD branch", "DIOD's Δ")
    out += cost_section(meta, stages)
    return "\n".join(out)


# (column title, metric key of a trial, scale): the teacher's activity over the branch's last
# distillation epoch (training batches) and its kept candidates against GT on the test split at
# the branch's start (the burn-in teacher) and end (docs/teacher.md)
TEACHER_COLUMNS = (
    ("kept / frame", "teacher/kept_per_frame", 1.0),
    ("frames with kept, %", "teacher/frames_with_kept", 100.0),
    ("motion masks kept, %", "teacher/motion_kept_share", 100.0),
    ("epochs with none kept", "teacher/epochs_without_candidates", 1.0),
    ("precision vs GT at start, %", "burn_in/teacher_precision", 100.0),
    ("precision vs GT at end, %", "final/teacher_precision", 100.0),
    ("kept candidate's area at end, % of frame", "final/teacher_kept_area", 100.0),
)


def teacher_activity_section(stages: dict[str, dict[str, Any]]) -> list[str]:
    """Is the mechanism active? Per variant with a teacher, its activity over seeds."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in stages.get("variants", {}).get("trials", []):
        v = t.get("params", {}).get("_variant")
        if v == "more_burn_in":
            continue
        for _, key, scale in TEACHER_COLUMNS:
            x = metric(t, *key.split("/", 1))
            rows[v][key].append(None if x is None else scale * x)
    if not rows:
        return []
    out = [
        "## The teacher's activity (is the mechanism active?)",
        "",
        "Per branch with pseudo-labels: the last distillation epoch's kept candidates and motion "
        "masks on training batches, the epochs of the branch that kept no candidate, and the "
        "share of kept candidates that hit a GT object (IoU > 0.5) on the test split at the "
        "branch's start and end, and a kept candidate's mean area there at the end (objects are "
        "a few % of the frame; a candidate of tens of % is a region of the image). Cells as above.",
        "",
        "| method | " + " | ".join(c for c, _, _ in TEACHER_COLUMNS) + " |",
        "|---|" + "---|" * len(TEACHER_COLUMNS),
    ]
    for v in [n for n in ("one_to_one", "no_motion_masks", "offline", "final") if n in rows]:
        cells = [fmt_cell(summarise(rows[v][key])) for _, key, _ in TEACHER_COLUMNS]
        label = "DIOD" if v == "final" else ABLATION_LABELS[v]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out + [""]


# ============================================================================================
# Preconditions of a test of the claim, measured at the switch (issue 21)
# ============================================================================================


def _gates_by_seed(stages: dict[str, dict[str, Any]], variant: str) -> dict[int, dict | None]:
    """Seed -> the ``gates/*`` values of that seed's ``variant`` branch (None: not measured)."""
    out: dict[int, dict | None] = {}
    for t in stages.get("variants", {}).get("trials", []):
        p = t.get("params", {})
        if p.get("_variant") == variant:
            out[p.get("run.seed", 0)] = from_metrics(t.get("metrics", {}))
    return out


def untestable_label(by_seed: dict[Any, dict | None]) -> str:
    """The label of a comparison made on these seeds' burn-ins: "untestable: <gates>" when some
    seed failed a gate (naming the seeds when not all did); "" when every measured seed is
    testable or none was measured (a sweep from before the gates)."""
    measured = {s: v for s, v in by_seed.items() if v is not None}
    failed = {s: verdict(v)["failed"] for s, v in measured.items()}
    bad = sorted((s for s in failed if failed[s]), key=str)
    if not bad:
        return ""
    names = [g.name for g in GATES if any(g.name in failed[s] for s in bad)]
    text = "untestable: " + ", ".join(names)
    if len(bad) < len(measured):
        text += f" (seed {', '.join(str(s) for s in bad)} of {len(measured)})"
    return text


def _with_label(cell: str, label: str) -> str:
    return f"{cell} — {label}" if label else cell


def _gate_cell(gate, result: dict[str, Any]) -> str:
    return f"{gate.show(result['value'])} {'ok' if result['passed'] else 'FAIL'}"


def preconditions_section(
    rows: list[tuple[str, dict | None]], per: str, compared: str
) -> list[str]:
    """The gates per seed (trial) at the switch, on the val split, with M and M' precision and
    the verdict; ``compared`` names the differences that carry "untestable: <gates>"."""
    out = [
        "## Preconditions at the switch (is this burn-in a test of the claim?)",
        "",
    ]
    if not any(values is not None for _, values in rows):
        return out + [
            "Not measured: these trials ran before the gates existed (issue 21; docs/teacher.md, "
            '"Preconditions").',
            "",
        ]
    out += [
        "Measured on the end-of-burn-in model and the teacher made from it, on the whole val "
        'split (docs/teacher.md, "Preconditions"). A burn-in that fails a gate cannot test '
        f'whether distillation helps: {compared} on it is labelled "untestable: <gates>", which '
        "neither supports nor refutes the paper's claim. M, M': precision of the motion masks "
        "and of those the teacher's W_fg filter keeps (not gates).",
        "",
        f"| {per} | "
        + " | ".join(f"{g.name} ({g.comparison} {g.show(g.threshold)})" for g in GATES)
        + " | M precision | M′ precision | verdict |",
        "|---|" + "---|" * (len(GATES) + 3),
    ]
    for name, values in rows:
        if values is None:
            out.append(f"| {name} | " + " | ".join(["not measured"] * len(GATES)) + " | | | |")
            continue
        cells = [_gate_cell(g, r) for g, r in zip(GATES, gate_results(values))]
        for key in ("motion_precision", "filtered_motion_precision"):
            v = values.get(key)
            cells.append("–" if v is None else f"{100 * v:.1f} %")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {verdict(values)['text']} |")
    return out + [""]


def gates_csv(stages: dict[str, dict[str, Any]]) -> str | None:
    """One row per trial that measured the gates at its switch: stage, trial, variant, seed,
    each gate's value and pass, M and M' precision, the verdict. None when no trial did."""
    rows = []
    for stage_name, stage in stages.items():
        for t in stage.get("trials", []):
            values = from_metrics(t.get("metrics", {}))
            if values is None:
                continue
            p = t.get("params", {})
            row: dict[str, Any] = {
                "stage": stage_name,
                "trial_id": t.get("trial_id"),
                "variant": p.get("_variant", ""),
                "seed": p.get("run.seed", 0),
            }
            for r in gate_results(values):
                row[r["name"]] = r["value"]
                row[f"{r['name']}_passed"] = r["passed"]
            row["motion_precision"] = values.get("motion_precision")
            row["filtered_motion_precision"] = values.get("filtered_motion_precision")
            row["verdict"] = verdict(values)["text"]
            rows.append(row)
    if not rows:
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
