"""Preconditions of a test of DIOD's claim, measured at the switch from burn-in to distillation.

Distillation (paper §3.3) can only add what the end-of-burn-in model already half-sees: a teacher
that finds no objects, or finds the moving ones as well as the static ones, or keeps regions of the
image instead of objects, gives pseudo-labels that cannot lift static recall. A comparison of DIOD
against its control made on such a burn-in does not test the claim, whichever way it comes out
(issue 21; docs/teacher.md, "Preconditions").

On evaluation clips with GT (the ``val`` split in a run) this module measures, for the end-of-burn-in
model (the teacher at the switch is a copy of it):

* the model's F1@50, static and moving recall (:func:`~diod_ray.inference.evaluate_model`);
* the teacher's mean W_fg on static GT objects, moving GT objects and background, each GT object's
  share of the frame, and the precision of the motion masks M and of the filtered masks M'
  (the counters of :mod:`diod_ray.gate_counts`, one batched pass);
* the teacher's kept candidates: precision against GT and mean area
  (:func:`~diod_ray.teacher_diagnostics.evaluate_teacher`, the same pass).

:data:`GATES` turns them into five pass/fail gates; :func:`verdict` says "testable" or
"untestable: <gates>". Every counter is a sum, so each rank of a DDP job measures its share and
the counters are summed over the ranks (``all_reduce``) like the rest of the evaluation. No Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where tensors are used: the gate table and verdict
    # (sweep reports) import no torch
    import torch

    from diod_ray.config import Config

# ============================================================================================
# The gates: thresholds in one place, each with where it comes from
# ============================================================================================

# The paper switches to distillation at F1@50 16.9 % (TRI-PD test, alpha 0.3 after 400 burn-in
# epochs: Table 4(b) "end of burn-in", Table 4(c)); distillation then reached 35.4 %. Its other
# switch points span 12.7-18.8 % (Table 4(c)). 15 % asks for a burn-in near the paper's chosen
# one; below it the teacher has too few objects to hand on (our 2-core runs switched at 5.9 %,
# docs/results.md).
MIN_BURN_IN_F1 = 0.15
# Distillation exists to recover the static objects that motion masks miss (§3.3: pseudo-labels
# "enrich the student's attention W by retrieving objects activated in the teacher's attention",
# motion masks cover moving objects only). If static recall is already within 10 points of moving
# recall, there is little for it to add. 10 points: issue 21's choice, not a paper number.
MIN_HEADROOM = 0.10
# The teacher's W_fg is the objectness map that scores candidates and filters motion masks (§3.3.3,
# Fig. 3; eq. 2 with p = 0.9). A static object can only become a kept candidate if W_fg on it
# stands clearly above the background: 0.3 of the [0, 1] range. Issue 21's choice, not a paper
# number.
MIN_STATIC_FG_CONTRAST = 0.30
# At least one kept pseudo-label in four should be an object (IoU > 0.5 with a GT object, the
# F1@50 rule), or eq. 3 mostly teaches noise. The paper reports no teacher precision; 25 % is
# issue 21's floor (our 2-core burn-ins gave 11 %, docs/results.md).
MIN_KEPT_PRECISION = 0.25
# A kept candidate should be object-sized: §3.3.2 introduces one-to-many connection precisely
# because merged instances teach "semantic" segments. A kept candidate's mean area above twice the
# mean GT object's area means the teacher keeps merged regions (seed 0 of our default job kept one
# region of ~44 % of the frame where an object is 2 %, docs/results.md). Issue 21's choice.
MAX_KEPT_AREA_RATIO = 2.0

GATE_PREFIX = "gates/"  # the keys in a run's metrics, TensorBoard and trial metrics


@dataclass(frozen=True)
class Gate:
    name: str
    threshold: float
    comparison: str  # ">=" or "<="
    what: str  # what the value is
    if_null: str  # why the value can be missing
    unit: str  # "%": a fraction shown in percent; "pt": a difference of two, in points;
    # "": a W_fg value in [0, 1]; "x": a ratio

    def passes(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False  # a gate that cannot be computed fails
        return value >= self.threshold if self.comparison == ">=" else value <= self.threshold

    def show(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "null"
        if self.unit in ("%", "pt"):
            return f"{100 * value:.1f} {'%' if self.unit == '%' else 'points'}"
        return f"{value:.2f}{self.unit}"


GATES: tuple[Gate, ...] = (
    Gate(
        "burn_in_f1",
        MIN_BURN_IN_F1,
        ">=",
        "F1@50 of the end-of-burn-in model",
        "no predicted and no GT object on the clips",
        "%",
    ),
    Gate(
        "headroom",
        MIN_HEADROOM,
        ">=",
        "moving recall minus static recall",
        "no static or no moving GT object with known moving flags",
        "pt",
    ),
    Gate(
        "static_fg_contrast",
        MIN_STATIC_FG_CONTRAST,
        ">=",
        "teacher's mean W_fg on static GT objects minus its mean W_fg on background",
        "no static GT object with known moving flags",
        "",
    ),
    Gate(
        "kept_precision",
        MIN_KEPT_PRECISION,
        ">=",
        "share of the teacher's kept candidates with IoU > 0.5 with a GT object",
        "the teacher kept no candidate",
        "%",
    ),
    Gate(
        "kept_area_ratio",
        MAX_KEPT_AREA_RATIO,
        "<=",
        "a kept candidate's mean share of the frame over a GT object's mean share",
        "the teacher kept no candidate, or no GT object on the clips",
        "x",
    ),
)
GATE_NAMES = tuple(g.name for g in GATES)


# ============================================================================================
# Measurement
# ============================================================================================


def gate_values(parts: Mapping[str, Any]) -> dict[str, float | None]:
    """The five gate values from the measured parts (None where a part is missing)."""

    def num(key: str) -> float | None:
        v = parts.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    area, obj = num("kept_area"), num("object_area")
    return {
        "burn_in_f1": num("f1"),
        "headroom": diff(num("moving_recall"), num("static_recall")),
        "static_fg_contrast": diff(num("fg_static"), num("fg_background")),
        "kept_precision": num("kept_precision"),
        "kept_area_ratio": area / obj if area is not None and obj else None,
    }


def measure_preconditions(
    model: torch.nn.Module,
    teacher: Any,
    batches: Callable[[], Iterable[dict]],
    cfg: Config,
    *,
    protocol: str = "clean",
    all_reduce: bool = False,
) -> dict[str, float | None]:
    """Everything the gates need, on evaluation batches with GT.

    model: the end-of-burn-in model (its F1, static / moving recall under ``protocol``); teacher:
    the :class:`~diod_ray.teacher.EMATeacher` made from it (or a plain model), run as distillation
    runs it (``distill.teacher_bn``); batches: a callable giving a fresh pass over the batches
    (dicts from ``iter_eval_batches``; called twice). ``all_reduce``: every rank of a DDP job
    measures its share and the counters are summed (every rank must call it).

    Returns a flat dict: the gate values (:data:`GATE_NAMES`, None where they cannot be computed)
    and the parts (f1, static_recall, moving_recall, fg_static / fg_moving / fg_background,
    kept_precision, kept_area, object_area, motion_precision (M), filtered_motion_precision (M'),
    n_static_objects, n_moving_objects, n_kept, n_motion_masks, n_filtered_masks, frames)."""
    from diod_ray.gate_counts import TeacherGatePass
    from diod_ray.inference import evaluate_model
    from diod_ray.teacher_diagnostics import evaluate_teacher

    metrics = evaluate_model(model, batches(), cfg, protocol, all_reduce=all_reduce)
    hook = TeacherGatePass(cfg)
    teacher_summary = evaluate_teacher(
        teacher, batches(), cfg, all_reduce=all_reduce, on_window=hook
    )
    device = next(getattr(teacher, "model", teacher).parameters()).device
    counts = hook.counts.all_reduce(device) if all_reduce else hook.counts
    parts: dict[str, float | None] = {
        "f1": metrics.get("f1"),
        "static_recall": metrics.get("static_recall"),
        "moving_recall": metrics.get("moving_recall"),
        "kept_precision": _finite(teacher_summary.get("precision")),
        "kept_area": _finite(teacher_summary.get("kept_area")),
        "n_kept": float(teacher_summary.get("n_kept", 0.0)),
        "frames": float(metrics.get("frames", 0)),
        **counts.summary(),
    }
    return {**gate_values(parts), **parts}


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


# ============================================================================================
# Verdict and its presentations (console, metrics, JSON)
# ============================================================================================


def gate_results(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per gate: name, value (None when not computable), threshold, comparison, passed, why
    (the reason a value is missing, else None)."""
    out = []
    for g in GATES:
        v = values.get(g.name)
        v = float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None
        out.append(
            {
                "name": g.name,
                "value": v,
                "threshold": g.threshold,
                "comparison": g.comparison,
                "passed": g.passes(v),
                "why": g.if_null if v is None else None,
            }
        )
    return out


def verdict(values: Mapping[str, Any], premise: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"testable": bool, "failed": [names], "text": "testable" | "untestable: a, b"}``.
    ``values``: gate name -> value (None or NaN: not computable, which fails the gate).
    ``premise``: the data's premise (:func:`premise_line`; None when not asked for, as in a
    burn-in-only run). A failed premise makes any comparison untestable and leads the list
    ("untestable: premise, headroom"); a premise asked for but not measured is said after the
    text ("testable (premise not measured)")."""
    failed = ["premise"] if premise_failed(premise) else []
    failed += [r["name"] for r in gate_results(values) if not r["passed"]]
    text = "testable" if not failed else "untestable: " + ", ".join(failed)
    if premise is not None and premise.get("premise_holds") is None:
        text += " (premise not measured)"
    return {"testable": not failed, "failed": failed, "text": text}


def console_lines(values: Mapping[str, Any], where: str = "val") -> list[str]:
    """One line per gate (value, threshold, pass / FAIL, why when null), M and M' precision,
    then the verdict: what rank 0 prints at the switch."""
    lines = []
    for g, r in zip(GATES, gate_results(values)):
        mark = "pass" if r["passed"] else "FAIL"
        why = f" ({r['why']})" if r["why"] else ""
        lines.append(
            f"[diod_ray] gate {g.name}: {g.show(r['value'])} (need {g.comparison} "
            f"{g.show(g.threshold)}) {mark}{why}"
        )
    m, mf = (_finite(values.get(k)) for k in ("motion_precision", "filtered_motion_precision"))
    show = Gate("", 0.0, ">=", "", "", "%").show
    lines.append(
        f"[diod_ray] motion masks on {where}: precision M {show(m)}, M' (W_fg filter) {show(mf)}"
    )
    lines.append(f"[diod_ray] preconditions at the switch ({where}): {verdict(values)['text']}")
    return lines


def to_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """``gates/<key>`` floats for a run's metrics and TensorBoard (NaN where not computable) and
    ``gates/testable`` 1 / 0."""
    out = {f"{GATE_PREFIX}{k}": (math.nan if v is None else float(v)) for k, v in values.items()}
    out[f"{GATE_PREFIX}testable"] = float(verdict(values)["testable"])
    return out


def from_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None] | None:
    """The values back from ``gates/*`` metrics (NaN -> None); None when no gate was measured."""
    if f"{GATE_PREFIX}testable" not in metrics:
        return None
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if k.startswith(GATE_PREFIX) and k != f"{GATE_PREFIX}testable":
            out[k[len(GATE_PREFIX) :]] = _finite(v)
    return out


def summary_json(
    values: Mapping[str, Any], split: str = "val", premise: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``preconditions`` object of the final JSON line: each gate (value, threshold,
    comparison, passed, why), M and M' precision, the parts measured, and the verdict text
    (with the data's premise when given, :func:`verdict`)."""
    gates = {r.pop("name"): r for r in gate_results(values)}
    parts = {k: _finite(v) for k, v in values.items() if k not in GATE_NAMES}
    return {
        "split": split,
        "gates": gates,
        "motion_precision": parts.get("motion_precision"),
        "filtered_motion_precision": parts.get("filtered_motion_precision"),
        "measured": parts,
        "verdict": verdict(values, premise)["text"],
    }


# ============================================================================================
# The benchmark's premise, measured on the data before any training (docs/data.md, "Version 3")
# ============================================================================================
# The gates ask whether a burn-in can test the claim; the premise asks whether the data can:
# objects (static ones included) must look unlike the background, or no method can carry
# objectness from moving to static objects (diod_ray/data/inspection/premise.py). A run or sweep
# measures it once, before training, and it joins the verdict.


def premise_line(premise: Mapping[str, Any], prefix: str = "[diod_ray]") -> str:
    """One console line: the two pixel classifiers' AUCs and whether the premise holds."""
    holds = premise.get("premise_holds")
    if holds is None:
        why = premise.get("skipped") or "an AUC could not be computed"
        return f"{prefix} premise of the data: not measured ({why})"

    def auc(name: str) -> str:
        v, s = premise.get(f"{name}_auc"), premise.get(f"{name}_auc_static")
        show = lambda x: "null" if x is None else f"{x:.3f}"  # noqa: E731
        return f"{name} AUC {show(v)} (static {show(s)})"

    return (
        f"{prefix} premise of the data: {auc('appearance')}, {auc('colour')}: "
        f"{'holds' if holds else 'FAILS'} (rule: {premise.get('rule', '')})"
    )


def premise_failed(premise: Mapping[str, Any] | None) -> bool:
    return premise is not None and premise.get("premise_holds") is False
