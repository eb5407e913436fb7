"""The preconditions of a test of the claim, measured at each trial's switch (issue 21), in a
sweep's report: the "Preconditions at the switch" section of ``table.md`` (each gate per seed with
ok / FAIL, M and M' precision, the verdict), the "untestable: <gates>" label a comparison on a
failed burn-in carries, and ``gates.csv``."""

from __future__ import annotations

import csv
import io
from typing import Any

from diod_ray.preconditions import (
    GATES,
    from_metrics,
    gate_results,
    premise_failed,
    premise_line,
    verdict,
)


def untestable_label(
    by_seed: dict[Any, dict | None],
    premise: dict | None = None,
    others: tuple[dict[Any, dict | None], ...] = (),
) -> str:
    """The label of a comparison made on these seeds' burn-ins: "untestable: <gates>" when some
    seed failed a gate (naming the seeds when not all did), led by "premise" when the data fails
    DIOD's premise (then every seed is untestable); "" when the premise did not fail and every
    measured seed is testable or none was measured (a sweep from before the gates). ``others``:
    the gates of further branches in the same comparison (a variant against DIOD), per seed; a
    seed fails a gate when any of its branches does."""
    failed: dict[Any, set[str]] = {}
    for gates in (by_seed, *others):
        for s, v in gates.items():
            if v is not None:
                failed.setdefault(s, set()).update(verdict(v)["failed"])
    bad = sorted((s for s in failed if failed[s]), key=str)
    names = [g.name for g in GATES if any(g.name in failed[s] for s in bad)]
    if premise_failed(premise):
        names = ["premise"] + names
    if not names:
        return ""
    text = "untestable: " + ", ".join(names)
    if bad and len(bad) < len(failed):
        seeds = f"seed {', '.join(str(s) for s in bad)} of {len(failed)}"
        text += f" (gates failed on {seeds})" if premise_failed(premise) else f" ({seeds})"
    return text


def with_label(cell: str, label: str) -> str:
    return f"{cell} — {label}" if label else cell


def _gate_cell(gate, result: dict[str, Any]) -> str:
    return f"{gate.show(result['value'])} {'ok' if result['passed'] else 'FAIL'}"


def premise_lines(premise: dict | None) -> list[str]:
    """The data's premise, measured before the first trial (``premise.json``), as one line."""
    if premise is None:
        return ["Premise of the data: not measured (a sweep from before premise.json).", ""]
    text = premise_line(premise, "").strip()
    text = text[0].upper() + text[1:]
    if premise_failed(premise):
        text += ": every comparison below is untestable, whatever its gates say"
    return [text + ".", ""]


def preconditions_section(
    rows: list[tuple[str, dict | None]], per: str, compared: str, premise: dict | None = None
) -> list[str]:
    """The data's premise, then the gates per seed (trial) at the switch, on the val split, with
    M and M' precision and the verdict; ``compared`` names the differences that carry
    "untestable: <gates>"."""
    out = [
        "## Preconditions at the switch (is this burn-in a test of the claim?)",
        "",
    ] + premise_lines(premise)
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
        text = verdict(values, premise)["text"]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {text} |")
    return out + [""]


def gates_csv(stages: dict[str, dict[str, Any]], premise: dict | None = None) -> str | None:
    """One row per trial that measured the gates at its switch: stage, trial, variant, seed,
    each gate's value and pass, M and M' precision, the verdict (with the data's premise). None
    when no trial did."""
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
            row["verdict"] = verdict(values, premise)["text"]
            rows.append(row)
    if not rows:
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
