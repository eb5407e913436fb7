"""benchmarks/gpu_acceptance.py on its CPU toy path: every section runs the code it runs on a GPU
(train step fp32 / bf16, deterministic mode, pseudo-labels and matching against their reference
loops, the Ray Data stream against the step's consumption) and the document has its keys, so the
script is ready the day a GPU is. The toy figures themselves mean nothing and are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # child processes and its own local Ray (data section)
@pytest.mark.timeout(400)
def test_cpu_toy_path_prints_one_complete_json_document(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    out_file = tmp_path / "gpu.json"
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_acceptance.sh", "--toy", "--out", str(out_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert json.loads(out_file.read_text()) == doc
    assert doc["benchmark"] == "gpu_acceptance" and doc["toy"] is True
    assert doc["device"] == "cpu" and doc["errors"] == [], json.dumps(doc, indent=1)[:4000]

    step = doc["train_step"]
    for precision in ("fp32", "bf16"):
        r = step[precision]
        assert r["precision"] == precision and r["preset"] == "smoke"
        for key in ("burn_in_step_s", "distill_step_s", "clips_per_s_burn_in", "peak_rss_gib"):
            assert r[key] > 0, (precision, key)
        assert "mfu_burn_in" in r and "mfu_distill" in r  # None without a GPU peak
    det = doc["deterministic"]
    assert det["runs"]["on"]["deterministic"] is True
    assert det["runs"]["off"]["deterministic"] is False
    assert det["burn_in_cost_ratio"] > 0 and det["distill_cost_ratio"] > 0

    pl = doc["pseudo_labels"]
    assert pl["benchmark"] == "pseudo_labels" and pl["device"] == "cpu"
    assert {"reference_dense", "ours_paper_dense"} <= set(pl["timings"])
    assert pl["speedup_wall"]["dense_masks"] > 0
    m = doc["matching"]
    assert m["losses_agree"] is True and m["reference_loop_s"] > 0 and m["batched_s"] > 0

    assert doc["ddp"]["status"] == "skipped" and "2 GPUs" in doc["ddp"]["reason"]
    data = doc["data"]
    assert data["pipeline_local"]["clips_per_pass"] == data["clips"]
    assert data["training_consumes_clips_s"] == step["bf16"]["clips_per_s_burn_in"]
    assert data["pipeline_over_consumption"] > 0
    assert doc["total_wall_s"] > 0
