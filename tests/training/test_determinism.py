"""Deterministic runs (issue #13): a run is a function of its config.

Same seed twice -> the same loss at every step, the same final metrics and weights; another
``run.seed`` -> other ones (the data seed derives from it); a run killed in burn-in or in
distillation and resumed -> exactly the uninterrupted run. Smoke preset, 2 burn-in epochs and
1 distillation epoch of 2 steps (6 steps), CPU, the current default ``run.num_workers``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from diod_ray.checkpoint import load_state
from diod_ray.config import apply_overrides, load_preset


def _losses(run_dir: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("loss/total")]


def _weights(summary: dict) -> dict[str, torch.Tensor]:
    state = load_state(summary["checkpoint"])
    return {**state["student"], **{f"t.{k}": v for k, v in state["teacher"]["model"].items()}}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_other_seed_other_run(smoke_run):
    from diod_ray.train import run

    a = smoke_run.summary  # the session's run (tests/conftest.py) is the reference
    b = run(smoke_run.config("seed0-b"), progress=False)
    other = {"run.seed": 1, "run.evaluate_at_end": False}  # its losses and weights differ
    c = run(smoke_run.config("seed1", **other), progress=False)
    la, lb, lc = (_losses(s["run_dir"]) for s in (a, b, c))
    assert len(la) == 6 and la == lb  # every step's loss, bit for bit
    assert la != lc
    assert a["final"] == b["final"] and a["burn_in"] == b["burn_in"]
    assert _same_weights(_weights(a), _weights(b))
    assert not _same_weights(_weights(a), _weights(c))
    # strict JSON: metrics that cannot be computed are null, never NaN
    text = json.dumps(a, allow_nan=False)
    assert json.loads(text) == a
    assert all(v is None or math.isfinite(v) for v in a["final"].values())


@pytest.mark.parametrize("fault_step", [3, 5], ids=["mid-burn-in", "mid-distillation"])
def test_killed_and_resumed_equals_uninterrupted(smoke_run, fault_step):
    """Checkpoints at every epoch end (steps 2, 4 = the switch to distillation); the worker
    process exits (os._exit) at step 3 (burn-in) or 5 (distillation); FailureConfig
    (max_failures=1) restarts the worker group, which resumes from step 2 or 4 and must end
    exactly where the uninterrupted run ended: the same final metrics, the same student and
    teacher weights."""
    from diod_ray.train import run

    a = smoke_run.summary
    faulty = {"run.fault_injection_step": fault_step, "run.max_failures": 1}
    r = run(smoke_run.config(f"fault{fault_step}", **faulty), progress=False)
    assert r["resumed_from_step"] == fault_step - 1 and r["steps"] == 6
    assert r["final"] == a["final"] and r["burn_in"] == a["burn_in"]
    assert _same_weights(_weights(r), _weights(a))


def test_deterministic_mode_switches_torch_to_deterministic_algorithms():
    """run.deterministic: Ray's enable_reproducibility (deterministic algorithms, cudnn.benchmark
    off, CUBLAS_WORKSPACE_CONFIG) with warn_only; off leaves torch's defaults on the CPU."""
    from diod_ray.training.loop import seed_and_determinism

    cpu = torch.device("cpu")
    before = torch.are_deterministic_algorithms_enabled()
    try:
        seed_and_determinism(load_preset("smoke"), cpu, 0)
        assert not torch.are_deterministic_algorithms_enabled()
        cfg = apply_overrides(load_preset("smoke"), {"run.deterministic": True})
        seed_and_determinism(cfg, cpu, 0)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before)
