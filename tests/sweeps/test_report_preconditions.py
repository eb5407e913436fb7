"""Sweep reports carry the preconditions measured at each trial's switch (issue 21): a gates table
per seed, gates.csv, and a DIOD comparison on an untestable burn-in labelled "untestable: <gates>"
(never read as a refutation). Hand-made trial metrics through the report test helpers of
test_sweep.py; no Ray."""

from __future__ import annotations

import csv
import io
import math

from test_sweep import _ablation_report, _trial

from diod_ray.preconditions import to_metrics
from diod_ray.sweeps.plan import alpha_burnin_plan
from diod_ray.sweeps.report.files import write_report
from diod_ray.sweeps.store import write_json

TESTABLE = {
    "burn_in_f1": 0.169,
    "headroom": 0.20,
    "static_fg_contrast": 0.45,
    "kept_precision": 0.40,
    "kept_area_ratio": 1.2,
    "motion_precision": 0.42,
    "filtered_motion_precision": 0.61,
}
# our 2-core burn-in: too few objects found, candidates of merged regions
LOW_F1 = {**TESTABLE, "burn_in_f1": 0.059, "kept_area_ratio": 3.1}
NO_KEPT = {**TESTABLE, "kept_precision": None, "kept_area_ratio": None}


def ablation_trials(gates_by_seed: dict[int, dict | None], offline: bool = False) -> list[dict]:
    """DIOD loses 3.6 points to the control on every seed; DIOD's trial carries its gates; with
    ``offline``, offline pseudo-labelling loses 1.0 point to DIOD on every seed."""
    trials = []
    for seed, gates in gates_by_seed.items():
        diod = _trial(f"final{seed}", {"_variant": "final", "run.seed": seed}, 0.06, 0.048)
        if gates is not None:
            diod["metrics"].update(to_metrics(gates))
        control = _trial(f"ctl{seed}", {"_variant": "more_burn_in", "run.seed": seed}, 0.06, 0.084)
        trials += [diod, control]
        if offline:
            trials.append(
                _trial(f"off{seed}", {"_variant": "offline", "run.seed": seed}, 0.06, 0.038)
            )
    return trials


def diod_row(table: str, section: str) -> list[str]:
    part = table.split(section)[1]
    row = next(line for line in part.splitlines() if line.startswith("| DIOD"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_untestable_burn_in_labels_the_diod_minus_control_difference(tmp_path):
    trials = ablation_trials({0: LOW_F1, 1: LOW_F1, 2: NO_KEPT}, offline=True)
    out = _ablation_report(str(tmp_path / "ab"), trials, [0, 1, 2])
    table = open(out["table"]).read()
    cells = diod_row(table, "## (b) distillation")
    # every pair loses 3.6 points: the interval excludes 0, and the label says what it means
    label = "untestable: burn_in_f1, kept_precision, kept_area_ratio"
    assert cells[-2] == f"-3.6 [-3.6, -3.6] (n=3) * — {label}"
    assert cells[-3].endswith(f"— {label}") and cells[-1] == "–"
    # a variant distils from the same burn-in: its difference to DIOD carries the same label
    part = table.split("## (b) distillation")[1]
    offline = next(ln for ln in part.splitlines() if ln.startswith("| offline"))
    assert offline.rstrip().endswith(f"| -1.0 [-1.0, -1.0] (n=3) * — {label} |"), offline
    assert "neither supports nor refutes" in table
    # the gates table, one row per seed
    section = table.split("## Preconditions at the switch")[1]
    rows = [line for line in section.splitlines() if line.startswith("| seed ")]
    assert len(rows) == 3
    seed0 = [c.strip() for c in rows[0].strip("|").split("|")]
    assert seed0[0] == "seed 0" and seed0[1] == "5.9 % FAIL" and seed0[2] == "20.0 points ok"
    assert seed0[3] == "0.45 ok" and seed0[5] == "3.10x FAIL"
    assert seed0[6:8] == ["42.0 %", "61.0 %"]  # M and M' precision
    assert seed0[8] == "untestable: burn_in_f1, kept_area_ratio"
    seed2 = [c.strip() for c in rows[2].strip("|").split("|")]
    assert seed2[4] == "null FAIL" and seed2[8] == "untestable: kept_precision, kept_area_ratio"
    # gates.csv: one row per trial that measured them (the control has no switch)
    gates = list(csv.DictReader(io.StringIO(open(out["gates"]).read())))
    assert [(r["variant"], r["seed"]) for r in gates] == [
        ("final", "0"),
        ("final", "1"),
        ("final", "2"),
    ]
    assert gates[0]["burn_in_f1_passed"] == "False" and gates[2]["kept_precision"] == ""
    assert gates[1]["verdict"] == "untestable: burn_in_f1, kept_area_ratio"


def test_testable_burn_in_carries_no_label_and_partial_names_the_seeds(tmp_path):
    table = open(
        _ablation_report(str(tmp_path / "ok"), ablation_trials({0: TESTABLE, 1: TESTABLE}), [0, 1])[
            "table"
        ]
    ).read()
    assert diod_row(table, "## (b) distillation")[-2] == "-3.6 [-3.6, -3.6] (n=2) *"
    assert "| seed 1 | " in table and "| testable |" in table
    mixed = _ablation_report(
        str(tmp_path / "mixed"), ablation_trials({0: TESTABLE, 1: LOW_F1, 2: TESTABLE}), [0, 1, 2]
    )
    cells = diod_row(open(mixed["table"]).read(), "## (b) distillation")
    assert cells[-2].endswith("— untestable: burn_in_f1, kept_area_ratio (seed 1 of 3)")


def test_sweep_from_before_the_gates_says_not_measured(tmp_path):
    out = _ablation_report(str(tmp_path / "old"), ablation_trials({0: None}), [0])
    table = open(out["table"]).read()
    assert diod_row(table, "## (b) distillation")[-2] == "-3.6 (n=1)"  # no label, no claim
    assert "Not measured: these trials ran before the gates existed" in table
    assert "gates" not in out  # no gates.csv


def test_alpha_burnin_report_has_gates_per_cell_and_seed(tmp_path):
    plan = alpha_burnin_plan([0.3], [1, 2], 2, [0])
    root = str(tmp_path / "ab")
    write_json(
        f"{root}/sweep.json",
        {"kind": "alpha_burnin", "name": "ab", "preset": "smoke", "plan": plan.to_dict()},
    )
    dist = []
    for e, gates in ((1, LOW_F1), (2, TESTABLE)):
        t = _trial(
            f"d{e}",
            {"objectives.alpha": 0.3, "schedule.burn_in_epochs": e, "run.seed": 0},
            0.1,
            0.12,
        )
        t["metrics"].update(to_metrics(gates))
        dist.append(t)
    write_json(f"{root}/distill/results.json", {"trials": dist})
    table = open(write_report(root)["table"]).read()
    row1 = next(line for line in table.splitlines() if line.startswith("| 0.3 | 1 | "))
    assert "— untestable: burn_in_f1, kept_area_ratio |" in row1
    row2 = next(line for line in table.splitlines() if line.startswith("| 0.3 | 2 | "))
    assert "untestable" not in row2
    assert "| α 0.3, burn-in 1, seed 0 | 5.9 % FAIL |" in table
    assert math.isnan(to_metrics(NO_KEPT)["gates/kept_precision"])  # stored as NaN, read as null


# the data's premise (premise.json, measured once before the first trial) joins every verdict
PREMISE_FAILS = {  # v3 with a quarter of the background in object textures (docs/data.md)
    "appearance_auc": 0.851,
    "appearance_auc_static": 0.857,
    "colour_auc": 0.476,
    "colour_auc_static": 0.491,
    "premise_holds": False,
    "rule": "appearance AUC >= 0.9 and colour AUC <= 0.75 (all and static)",
}
PREMISE_HOLDS = {**PREMISE_FAILS, "appearance_auc": 0.985, "appearance_auc_static": 0.985}
PREMISE_HOLDS["premise_holds"] = True


def test_a_failed_premise_makes_testable_burn_ins_untestable(tmp_path):
    root = str(tmp_path / "bg25")
    write_json(f"{root}/premise.json", PREMISE_FAILS)
    out = _ablation_report(root, ablation_trials({0: TESTABLE, 1: LOW_F1}), [0, 1])
    table = open(out["table"]).read()
    assert diod_row(table, "## (b) distillation")[-2].endswith(
        "— untestable: premise, burn_in_f1, kept_area_ratio (gates failed on seed 1 of 2)"
    )
    section = table.split("## Preconditions at the switch")[1]
    assert "Premise of the data: appearance AUC 0.851 (static 0.857)" in section
    assert "FAILS" in section and "every comparison below is untestable" in section
    seed0 = next(line for line in section.splitlines() if line.startswith("| seed 0 |"))
    assert seed0.rstrip().endswith("| untestable: premise |")
    gates = list(csv.DictReader(io.StringIO(open(out["gates"]).read())))
    assert [r["verdict"] for r in gates] == [
        "untestable: premise",
        "untestable: premise, burn_in_f1, kept_area_ratio",
    ]


def test_a_premise_that_holds_changes_no_verdict(tmp_path):
    root = str(tmp_path / "v3")
    write_json(f"{root}/premise.json", PREMISE_HOLDS)
    table = open(_ablation_report(root, ablation_trials({0: TESTABLE}), [0])["table"]).read()
    assert diod_row(table, "## (b) distillation")[-2] == "-3.6 (n=1)"
    assert "appearance AUC 0.985 (static 0.985), colour AUC 0.476 (static 0.491): holds" in table
    assert "| testable |" in table
    old = _ablation_report(str(tmp_path / "old"), ablation_trials({0: TESTABLE}), [0])
    assert "Premise of the data: not measured" in open(old["table"]).read()


def test_a_variant_is_labelled_by_its_own_branch_and_listed_in_the_gates_table(tmp_path):
    """One-to-one keeps other candidates than DIOD from the same burn-in: its branch's gates (here
    merged regions) label its differences, and a difference against DIOD carries both branches'."""
    trials = ablation_trials({0: TESTABLE, 1: TESTABLE})
    for seed in (0, 1):
        t = _trial(f"o2o{seed}", {"_variant": "one_to_one", "run.seed": seed}, 0.06, 0.040)
        t["metrics"].update(to_metrics({**TESTABLE, "kept_area_ratio": 3.1 if seed else 1.2}))
        trials.append(t)
    table = open(_ablation_report(str(tmp_path / "o2o"), trials, [0, 1])["table"]).read()
    assert diod_row(table, "## (b) distillation")[-2] == "-3.6 [-3.6, -3.6] (n=2) *"  # DIOD's own
    part = table.split("## (a) design choices")[1]
    o2o = [
        c.strip()
        for c in next(ln for ln in part.splitlines() if ln.startswith("| one-to-one"))
        .strip("|")
        .split("|")
    ]
    assert o2o[-1] == "-0.8 [-0.8, -0.8] (n=2) * — untestable: kept_area_ratio (seed 1 of 2)"
    assert o2o[-3].endswith("— untestable: kept_area_ratio (seed 1 of 2)")  # vs end of burn-in
    section = table.split("## Preconditions at the switch")[1]
    names = [ln.split("|")[1].strip() for ln in section.splitlines() if ln.startswith("| seed ")]
    assert names == [
        "seed 0",
        "seed 0, one-to-one connection",
        "seed 1",
        "seed 1, one-to-one connection",
    ]
    assert (
        "| seed 1, one-to-one connection | " in section
        and "| untestable: kept_area_ratio |" in (section)
    )
