"""``table.md`` of an ablation sweep (the paper's Table 4(a) and 4(b)): each variant's metrics
over seeds beside the paper's, its paired F1@50 differences against the end of burn-in, the
more-burn-in control and DIOD's final setting (Table 4(a)'s question), the teacher's activity per
branch, each branch's preconditions per seed, and the cost. The rows are also what
``cells.csv`` (:mod:`.csv_files`) and the bar plot (:mod:`.plots`) show."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from diod_ray.preconditions import from_metrics
from diod_ray.sweeps.report.cost import cost_section
from diod_ray.sweeps.report.gates import preconditions_section, untestable_label, with_label
from diod_ray.sweeps.report.paper import ABLATION_LABELS, PAPER_TABLE_4A, PAPER_TABLE_4B
from diod_ray.sweeps.report.results import METRICS, by_seed, completed, metric, pct
from diod_ray.sweeps.report.stats import METHOD_NOTE, fmt_cell, paired, summarise


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


# the rows that distil from the shared burn-in (a teacher, pseudo-labels): a comparison of any of
# them is read only where its branch passed the gates at the switch (each branch measures them)
DISTILLATION_ROWS = ("one_to_one", "no_motion_masks", "offline", "final")
# the paired differences reported: every row against these (Δ columns, cells.csv)
DIFFERENCE_BASES = ("end_of_burn_in", "more_burn_in", "final")


def _diff(rows: dict[str, dict[str, list]], name: str, against: str, label: str = "") -> str:
    """The paired F1@50 difference of row ``name`` against row ``against``, with ``label``
    ("untestable: <gates>", :func:`_label`) when it is not empty. Against ``final`` only
    distillation variants are compared (the other rows' difference to DIOD is the other
    columns' with its sign turned)."""
    if not _compared(rows, name, against):
        return "–"
    d = paired(by_seed(rows[name], "f1"), by_seed(rows[against], "f1"))
    cell = fmt_cell(d) + (" *" if d["excludes_0"] else "")
    return with_label(cell, label)


def _compared(rows: dict[str, dict[str, list]], name: str, against: str) -> bool:
    """Whether row ``name`` gets a paired difference against row ``against``: both ran, and
    against DIOD's final setting only the other distillation variants."""
    if name == against or name not in rows or against not in rows:
        return False
    return against != "final" or name in DISTILLATION_ROWS


def _label(
    gates: dict[str, dict[int, dict | None]], premise: dict | None, name: str, against: str
) -> str:
    """What a difference of row ``name`` against ``against`` can be read as: a distillation
    row's is "untestable: <gates>" when a seed's branch failed a gate at its switch, its own
    branch and, against another distillation row, that row's too (the variants share the
    burn-in, but each runs its teacher its own way: one-to-one keeps other candidates); led by
    "premise" when the data fails DIOD's premise. "" for the burn-in rows."""
    if name not in DISTILLATION_ROWS:
        return ""
    others = (gates[against],) if against in DISTILLATION_ROWS else ()
    return untestable_label(gates[name], premise, others)


def ablation_differences(rows: dict[str, dict[str, list]]) -> list[dict[str, Any]]:
    """Paired F1@50 differences of every row against the end of burn-in and the control, and of
    every distillation variant against DIOD's final setting."""
    out = []
    for n in rows:
        for against in DIFFERENCE_BASES:
            if _compared(rows, n, against):
                d = paired(by_seed(rows[n], "f1"), by_seed(rows[against], "f1"))
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
            " Δ vs end of burn-in | Δ vs more burn-in | Δ vs DIOD (final) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in names:
            r = rows.get(n)
            if not r:
                lines.append(
                    f"| {ABLATION_LABELS[n]} | not run | {paper.get(n, '–')} | | | | | | | |"
                )
                continue
            lines.append(
                f"| {ABLATION_LABELS[n]} | {fmt_cell(summarise(r['f1']))} | {paper.get(n, '–')} | "
                f"{fmt_cell(summarise(r['fg_ari']))} | {fmt_cell(summarise(r['all_ari']))} | "
                f"{fmt_cell(summarise(r['static_recall']))} | {sum(r['done'])}/{len(r['done'])} | "
                + " | ".join(_diff(rows, n, a, _label(gates, premise, n, a)) for a in bases)
                + " |"
            )
        return lines + [""]

    # a distillation row's comparisons test the claim only where its branches passed the gates
    # at their switch (issue 21); each branch measures them
    gates = {v: _gates_by_seed(stages, v) for v in DISTILLATION_ROWS}
    premise, bases = meta.get("premise"), DIFFERENCE_BASES

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
    # every branch's gates at its switch: DIOD's as "seed S", a variant's as "seed S, <variant>"
    gate_rows = [
        (f"seed {seed}" + ("" if v == "final" else f", {ABLATION_LABELS[v]}"), gates[v][seed])
        for seed in sorted({s for g in gates.values() for s in g})
        for v in ("final", "one_to_one", "no_motion_masks", "offline")
        if seed in gates[v] and (v == "final" or gates[v][seed] is not None)
    ]
    out += teacher_activity_section(stages)
    out += preconditions_section(gate_rows, "branch", "a distillation row's Δ", premise)
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
    for v in [n for n in DISTILLATION_ROWS if n in rows]:
        cells = [fmt_cell(summarise(rows[v][key])) for _, key, _ in TEACHER_COLUMNS]
        label = "DIOD" if v == "final" else ABLATION_LABELS[v]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out + [""]


def _gates_by_seed(stages: dict[str, dict[str, Any]], variant: str) -> dict[int, dict | None]:
    """Seed -> the ``gates/*`` values of that seed's ``variant`` branch (None: not measured)."""
    out: dict[int, dict | None] = {}
    for t in stages.get("variants", {}).get("trials", []):
        p = t.get("params", {})
        if p.get("_variant") == variant:
            out[p.get("run.seed", 0)] = from_metrics(t.get("metrics", {}))
    return out
