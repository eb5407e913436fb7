"""benchmarks/default_job_seeds.py: the default job's table over seeds from run summaries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _summary(run: Path, f1_burn: float, f1_final: float, kept: float) -> None:
    metrics = {m: 0.5 for m in ("fg_ari", "all_ari", "precision", "recall", "mbo")}
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps(
            {
                "run": run.name,
                "burn_in": {**metrics, "f1": f1_burn, "static_recall": None},
                "final": {**metrics, "f1": f1_final, "static_recall": None},
                "teacher": {"kept_per_frame": kept, "burn_in": {"precision": 0.25}},
            }
        )
    )


def test_mean_interval_and_paired_gain_over_seeds(tmp_path):
    runs = [tmp_path / f"seed{i}" for i in range(3)]
    for run, (b, f, k) in zip(runs, ((0.10, 0.12, 1.0), (0.20, 0.22, 2.0), (0.30, 0.32, 3.0))):
        _summary(run, b, f, k)
    script = REPO / "benchmarks" / "default_job_seeds.py"
    out = subprocess.run(
        [sys.executable, str(script), *map(str, runs)], capture_output=True, text=True, check=True
    ).stdout
    cells = json.loads(out.strip().splitlines()[-1])["cells"]
    # F1 10, 20, 30: mean 20, sd 10, half-width 4.3027 * 10 / sqrt(3) = 24.84
    assert cells["burn_in/f1"]["n"] == 3 and cells["burn_in/f1"]["mean"] == pytest.approx(20.0)
    assert cells["burn_in/f1"]["ci_high"] == pytest.approx(44.84, abs=0.01)
    # every seed gains exactly 2 points: a zero-width interval that excludes 0
    gain = cells["final-burn_in/f1"]
    assert gain["mean"] == pytest.approx(2.0) and gain["excludes_0"]
    # a metric no run has is no value (n = 0), never a zero
    assert cells["final/static_recall"]["n"] == 0 and cells["final/static_recall"]["mean"] is None
    assert cells["teacher/kept_per_frame"]["mean"] == pytest.approx(2.0)
    assert "| end of burn-in | " in out and "(n=3)" in out


def test_a_run_without_summary_is_named(tmp_path):
    script = REPO / "benchmarks" / "default_job_seeds.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert out.returncode != 0 and "missing/summary.json: not found" in out.stderr
