"""``table.md`` of an alpha x burn-in sweep (the paper's Table 4(c)): F1@50 per (alpha, burn-in
length) cell at the end of burn-in and after distillation beside the paper's, every metric per
cell with the paired gain, the preconditions per cell and seed, and the cost. The cells are also
what ``cells.csv`` (:mod:`.csv_files`) and the heatmaps (:mod:`.plots`) show."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from diod_ray.preconditions import from_metrics
from diod_ray.sweeps.report.cost import cost_section
from diod_ray.sweeps.report.gates import preconditions_section, untestable_label, with_label
from diod_ray.sweeps.report.paper import PAPER_TABLE_4C
from diod_ray.sweeps.report.results import (
    METRICS,
    by_seed,
    completed,
    fmt,
    mean_std,
    metric,
    pct,
)
from diod_ray.sweeps.report.stats import METHOD_NOTE, fmt_cell, paired, summarise


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
    out += _all_metrics_per_cell(cells, alphas, lengths, meta.get("premise"))
    gate_rows = [
        (f"α {a:g}, burn-in {e}, seed {seed}", values)
        for (a, e), c in sorted(cells.items())
        for seed, values in zip(c["seed"], c["gates"])
    ]
    out += [""] + preconditions_section(gate_rows, "cell and seed", "Δ F1", meta.get("premise"))
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


def _all_metrics_per_cell(
    cells: dict, alphas: list[float], lengths: list[int], premise: dict | None
) -> list[str]:
    """One row per run cell: every metric burn-in → after distillation and the paired F1 gain
    (labelled "untestable: <gates>" when a seed's burn-in failed a gate or the data the
    premise)."""
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

            gain = paired(by_seed(c, "final/f1"), by_seed(c, "burn_in/f1"))
            delta = fmt_cell(gain) + (" *" if gain["excludes_0"] else "")
            label = untestable_label(dict(zip(c["seed"], c["gates"])), premise)
            delta = with_label(delta, label)
            out.append(
                f"| {a:g} | {e} | {pair('f1')} | {delta} | {pair('fg_ari')} | {pair('all_ari')} | "
                f"{pair('static_recall')} | {pair('moving_recall')} | {sum(c['done'])}/{len(c['done'])} |"
            )
    return out
