"""Sweeps: plans and reuse accounting, ASHA grace period, resources, reports (fast), and one
end-to-end Tune + Train sweep on the smoke preset that is interrupted and resumed (slow)."""

from __future__ import annotations

import glob
import json
import os
import time

import pytest
import ray
from ray import tune

from diod_ray.config import load_preset
from diod_ray.sweep_plan import (
    PlanError,
    ablation_plan,
    alpha_burnin_plan,
    asha_grace_period,
    asha_max_t,
    branch_id,
    kept_checkpoint,
    max_concurrent_trials,
    threshold_plan,
    trial_resources,
)
from diod_ray.sweep_report import load_sweep, write_report

SWEEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sweeps")


def _script(name: str):
    """Import sweeps/<name>.py (a script folder, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"sweeps_{name}", os.path.join(SWEEPS, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# plans (pure)
# ---------------------------------------------------------------------------------------------


def test_alpha_burnin_plan_trains_one_burn_in_per_alpha():
    plan = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0])
    burn, distill = plan.stages
    assert burn.num_trials == 3 and burn.fixed["schedule.burn_in_epochs"] == 400
    assert burn.fixed["schedule.keep_burn_in_epochs"] == [200, 300, 400]
    assert burn.fixed["schedule.distill_epochs"] == 0
    assert distill.num_trials == 9 and distill.branch_key == ["objectives.alpha", "run.seed"]
    # 3 x 400 burn-in epochs instead of 3 x (200 + 300 + 400)
    assert (plan.burn_in_epochs, plan.naive_burn_in_epochs) == (1200, 2700)
    assert plan.distill_epochs == plan.naive_distill_epochs == 9 * 500
    assert plan.epochs_saved == 1500


def test_ablation_and_threshold_plans_share_one_burn_in():
    plan = ablation_plan(400, 500, [0, 1])
    assert plan.stages[0].num_trials == 2 and plan.stages[1].num_trials == 10
    assert plan.epochs_saved == 10 * 400 - 2 * 400
    # the control continues burn-in over the branch's epochs instead of distilling
    assert plan.stages[1].variants["more_burn_in"] == {
        "schedule.burn_in_epochs": 900,
        "schedule.distill_epochs": 0,
    }
    assert plan.stages[1].variants["offline"] == {"distill.offline": True}
    t = threshold_plan(400, 500, trials=10, search_alpha=False, search_ema=True)
    assert [s.name for s in t.stages] == ["burn_in", "search"] and t.stages[1].num_trials == 10
    assert t.epochs_saved == 9 * 400
    full = threshold_plan(400, 500, trials=10, search_alpha=True, search_ema=False)
    assert [s.name for s in full.stages] == ["search"] and full.epochs_saved == 0
    with pytest.raises(PlanError, match="--burn-in"):
        alpha_burnin_plan([0.3], [0], 5, [0])
    with pytest.raises(PlanError, match="--variants"):
        ablation_plan(4, 3, [0], ["nope"])


def test_control_branch_starts_from_the_stage_burn_in_checkpoint(tmp_path):
    from diod_ray.sweep import trial_config

    plan = ablation_plan(4, 3, [0], ["final", "more_burn_in"])
    stage = plan.stages[1]
    meta = {
        "preset": "smoke",
        "overrides": {},
        "stage": stage.name,
        "variants": stage.variants,
        "branch_key": stage.branch_key,
        "branch_runs": {branch_id({"run.seed": 0}, ["run.seed"]): str(tmp_path / "burn")},
        "runs": str(tmp_path / "runs"),
    }
    for variant, burn_in, distill in (("final", 4, 3), ("more_burn_in", 7, 0)):
        config = {**stage.fixed, "run.seed": 0, "_variant": variant, "_sweep": meta}
        cfg = trial_config(config, f"t-{variant}")
        assert (cfg.schedule.burn_in_epochs, cfg.schedule.distill_epochs) == (burn_in, distill)
        assert cfg.run.init_from == kept_checkpoint(str(tmp_path / "burn"), 4)


@pytest.mark.parametrize("burn_in,distill", [(400, 500), (3, 4), (1, 1), (10, 0), (2, 3)])
def test_asha_grace_period_lies_past_burn_in(burn_in, distill):
    cfg = load_preset("tri-pd")
    cfg.schedule.burn_in_epochs, cfg.schedule.distill_epochs = burn_in, distill
    grace = asha_grace_period(cfg)
    assert grace > burn_in  # no trial is judged before distillation has run
    assert grace <= max(asha_max_t(cfg), burn_in + 1)
    if (burn_in, distill) == (400, 500):
        assert grace == 525


def test_concurrency_from_cluster_resources():
    cfg = load_preset("tri-pd")  # 8 GPU workers per run
    res = trial_resources(cfg)
    assert res.total["GPU"] == 8
    assert max_concurrent_trials({"CPU": 128, "GPU": 16}, res.total) == 2
    with pytest.raises(PlanError, match="cluster has"):
        max_concurrent_trials({"CPU": 128, "GPU": 4}, res.total)
    local = trial_resources(load_preset("smoke"), cpus_per_trial=2)
    assert local.bundles == [{"CPU": 0.1}] and local.total["CPU"] == 2
    assert max_concurrent_trials({"CPU": 2, "GPU": 0}, local.total) == 1
    assert max_concurrent_trials({"CPU": 16, "GPU": 0}, local.total) == 8


def test_dry_run_prints_the_reuse_and_starts_nothing(capsys, tmp_path):
    import ray

    alpha_burnin = _script("alpha_burnin")
    ray_was_up = (
        ray.is_initialized()
    )  # the session's Ray may already run; dry-run must not start one

    rc = alpha_burnin.main(
        [
            "--dry-run",
            "--preset",
            "smoke",
            "--storage",
            str(tmp_path),
            "--burn-in",
            "200",
            "300",
            "--distill",
            "500",
            "--seconds-per-epoch",
            "36",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and ray.is_initialized() == ray_was_up
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["stages"][0]["trials"] == 3 and summary["stages"][1]["trials"] == 6
    assert summary["epochs"]["saved"] == 3 * 200
    assert summary["estimate"]["saved_CPU_hours"] == pytest.approx(600 * 36 * 2 / 3600)
    assert "saves 600 epochs" in out
    assert not os.listdir(tmp_path)  # nothing written


# ---------------------------------------------------------------------------------------------
# reports from a hand-made results.json (no Ray)
# ---------------------------------------------------------------------------------------------


def _trial(tid, params, burn_f1, final_f1, seconds=100.0, status="TERMINATED"):
    m = {"epoch": 3, "time_total_s": seconds}
    for phase, f1 in (("burn_in", burn_f1), ("final", final_f1)):
        if f1 is not None:
            m.update(
                {
                    f"{phase}/f1": f1,
                    f"{phase}/fg_ari": 0.5,
                    f"{phase}/all_ari": 0.6,
                    f"{phase}/static_recall": 0.25,
                    f"{phase}/moving_recall": 0.75,
                    f"{phase}/seconds": 10.0,
                }
            )
    return {
        "trial_id": tid,
        "status": status,
        "error": None,
        "params": params,
        "metrics": m,
        "train_run": f"/runs/{tid}",
        "time_total_s": seconds,
        "epochs_trained": 2,
    }


def test_report_regenerates_from_stored_results(tmp_path):
    from diod_ray.sweep_report import write_json

    plan = alpha_burnin_plan([0.2, 0.3], [1, 2], 2, [0])
    root = str(tmp_path / "sw")
    write_json(
        f"{root}/sweep.json",
        {
            "kind": "alpha_burnin",
            "name": "sw",
            "preset": "smoke",
            "overrides": {},
            "plan": plan.to_dict(),
            "resources": {"device": "CPU", "per_trial": {"CPU": 2.0}},
        },
    )
    burn = [
        _trial(f"b{i}", {"objectives.alpha": a, "run.seed": 0}, 0.1, 0.1, seconds=50.0)
        for i, a in enumerate((0.2, 0.3))
    ]
    dist = [
        _trial(
            f"d{a}{e}",
            {"objectives.alpha": a, "schedule.burn_in_epochs": e, "run.seed": 0},
            0.169,
            0.354 if a == 0.3 else None,
        )
        for a in (0.2, 0.3)
        for e in (1, 2)
    ]
    write_json(f"{root}/burn_in/results.json", {"trials": burn, "complete": True})
    write_json(f"{root}/distill/results.json", {"trials": dist, "complete": True})

    report = _script("report")

    assert report.main([root]) == 0
    table = open(f"{root}/table.md").read()
    assert "| 0.3 | 16.9 → 35.4 | 16.9 → 35.4 |" in table
    assert "| 0.2 | 16.9 → – | 16.9 → – |" in table
    assert "16.9 → 35.4" in table and "**2 epochs saved**" in table
    # (50 s - 10 s of evaluation) / 2 epochs = 20 s per burn-in epoch
    assert "measured 20.00 s per burn-in epoch" in table
    rows = open(f"{root}/trials.csv").read().strip().splitlines()
    assert len(rows) == 1 + 6 and "param:objectives.alpha" in rows[0]
    assert open(f"{root}/alpha_burnin.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    meta, stages = load_sweep(root)
    assert set(stages) == {"burn_in", "distill"}


def test_ablation_report_lays_out_table_4ab(tmp_path):
    from diod_ray.sweep_report import write_json

    plan = ablation_plan(2, 2, [0])
    root = str(tmp_path / "ab")
    write_json(
        f"{root}/sweep.json",
        {"kind": "ablations", "name": "ab", "preset": "smoke", "plan": plan.to_dict()},
    )
    f1 = {"final": 0.354, "one_to_one": 0.302, "no_motion_masks": 0.178, "offline": 0.263}
    f1["more_burn_in"] = 0.2
    trials = [_trial(v, {"_variant": v, "run.seed": 0}, 0.169, f1[v]) for v in f1]
    write_json(f"{root}/variants/results.json", {"trials": trials})
    out = write_report(root)
    table = open(out["table"]).read()
    assert "| one-to-one connection | 30.2 | 30.2 |" in table
    assert "| end of burn-in | 16.9 | 16.9 |" in table
    assert "| offline pseudo-labelling | 26.3 | 26.3 |" in table
    assert "| more burn-in instead (control) | 20.0 | – |" in table
    assert "DIOD minus the control" in table
    assert open(out["plot"], "rb").read(4) == b"\x89PNG"


# ---------------------------------------------------------------------------------------------
# end to end: Tune + Train on the smoke preset, interrupted and resumed (slow)
# ---------------------------------------------------------------------------------------------


def _event_files(run_dir: str) -> int:
    return len(glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*")))


@pytest.mark.slow
def test_alpha_burnin_sweep_runs_interrupts_and_resumes(ray_session, tmp_path):
    alpha_burnin = _script("alpha_burnin")

    args = [
        "--preset",
        "smoke",
        "--alphas",
        "0.2",
        "0.3",
        "--burn-in",
        "1",
        "2",
        "--distill",
        "1",
        "--storage",
        str(tmp_path),
        "--name",
        "grid",
    ]
    root = tmp_path / "grid"
    # 1. interrupted (as by Ctrl+C) after the first burn-in trial finished
    assert alpha_burnin.main(args + ["--stop-after-trials", "1"]) == 3
    first = json.loads((root / "burn_in" / "results.json").read_text())
    done = [t for t in first["trials"] if t["status"] == "TERMINATED"]
    assert len(done) == 1 and not first["complete"]
    done_run = done[0]["train_run"]
    kept = os.path.join(done_run, "kept", "burn_in_epoch_1", "state.pt")
    mtime = os.path.getmtime(kept)
    # 2. the same command resumes: the finished trial is not trained again
    assert alpha_burnin.main(args) == 0
    burn = json.loads((root / "burn_in" / "results.json").read_text())
    assert burn["complete"] and len(burn["trials"]) == 2
    # local-mode fits stream every report to Tune (what ASHA needs): 2 epochs = 2 results
    assert [t["metrics"]["training_iteration"] for t in burn["trials"]] == [2, 2]
    assert [t["epochs_trained"] for t in burn["trials"]] == [2, 2]
    assert os.path.getmtime(kept) == mtime and _event_files(done_run) == 1
    dist = json.loads((root / "distill" / "results.json").read_text())
    assert dist["complete"] and len(dist["trials"]) == 4
    for t in dist["trials"]:
        m = t["metrics"]
        assert "burn_in/f1" in m and "final/f1" in m
        assert m["epoch"] == t["params"]["schedule.burn_in_epochs"] + 1  # branched, then 1 epoch
        assert t["epochs_trained"] == 1
    # each (alpha, E) branch started from its alpha's kept checkpoint of epoch E
    assert {os.path.basename(t["train_run"]).split("-")[0] for t in dist["trials"]} == {"distill"}
    table = (root / "table.md").read_text()
    assert "| 0.2 |" in table and "| 0.3 |" in table and "not run" not in table
    assert len((root / "trials.csv").read_text().strip().splitlines()) == 1 + 6
    assert (root / "alpha_burnin.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_scheduler_stop_reaches_a_local_mode_trial_and_cancels_its_fit(ray_session, tmp_path):
    """A local-mode trial reports every epoch to Tune while it runs; when the scheduler stops it
    (as ASHA does), the fit task is cancelled instead of training on unseen."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from diod_ray.checkpoint import list_run_checkpoints
    from diod_ray.sweep import trial_driver

    class StopAtEpochOne(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return TrialScheduler.STOP if result.get("epoch", 0) >= 1 else TrialScheduler.CONTINUE

    runs = str(tmp_path / "runs")
    meta = {"preset": "smoke", "overrides": {}, "stage": "s", "runs": runs, "threads": 1}
    space = {"schedule.burn_in_epochs": 2, "schedule.distill_epochs": 6, "_sweep": meta}
    tuner = tune.Tuner(
        trial_driver,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=StopAtEpochOne(), num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="stop"),
    )
    t0 = time.monotonic()
    (result,) = list(tuner.fit())
    assert result.error is None
    assert result.metrics["epoch"] == 1 and "final/f1" not in result.metrics
    (run_dir,) = glob.glob(os.path.join(runs, "s-*"))
    time.sleep(8.0)  # a fit left running would go on to 8 epochs and save more checkpoints
    steps = [int(c.rstrip("/").rsplit("_", 1)[1]) for c in list_run_checkpoints(run_dir)]
    per_epoch = int(result.metrics["step"])  # the step count at the end of epoch 1
    # stopped at epoch 1; the trial notices at its next report (epoch 2) and cancels the fit
    assert max(steps) <= 2 * per_epoch < 8 * per_epoch, (steps, time.monotonic() - t0)


def test_trial_slots_bound_holders_and_expire_stale_leases(ray_session):
    from diod_ray.sweep_slots import TrialSlots

    slots = TrialSlots.remote(1, stale_after_s=0.5)
    assert ray.get(slots.acquire.remote("a")) and ray.get(slots.acquire.remote("a"))
    assert not ray.get(slots.acquire.remote("b"))
    time.sleep(0.7)  # "a" stopped renewing (its process died): its slot is given away
    assert ray.get(slots.acquire.remote("b"))
    ray.get(slots.release.remote("b"))
    assert ray.get(slots.acquire.remote("c"))
    events = [(t, e) for _, t, e in ray.get(slots.history.remote())]
    assert events == [
        ("a", "acquire"),
        ("a", "expired"),
        ("b", "acquire"),
        ("b", "release"),
        ("c", "acquire"),
    ]
    ray.kill(slots)


@pytest.mark.slow
def test_local_mode_trials_take_turns_without_tune_concurrency_limit(ray_session, tmp_path):
    """Tune starts every restored trial at once; the stage's slots still run one fit at a time."""
    from diod_ray.sweep import trial_driver
    from diod_ray.sweep_slots import slots_name, start_slots

    runs = str(tmp_path / "runs")
    meta = {"preset": "smoke", "overrides": {}, "stage": "s", "runs": runs, "threads": 1}
    slots = start_slots(slots_name(runs, "s"), 1)
    space = {
        "schedule.burn_in_epochs": 1,
        "schedule.distill_epochs": 0,
        "run.seed": tune.grid_search([0, 1, 2]),
        "_sweep": meta,
    }
    tuner = tune.Tuner(
        tune.with_resources(trial_driver, {"cpu": 0.1}),
        param_space=space,
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="slots"),
    )
    results = list(tuner.fit())
    assert all(r.error is None for r in results)
    # the trials that queued for the slot say how long, so cost reports can leave it out
    waits = sorted(r.metrics["sweep/slot_wait_s"] for r in results)
    assert waits[0] < 2.5 < waits[-1]
    holders, most = set(), 0
    for _, trial, event in ray.get(slots.history.remote()):
        (holders.add if event == "acquire" else holders.discard)(trial)
        most = max(most, len(holders))
    assert most == 1 and len(ray.get(slots.history.remote())) == 6
    ray.kill(slots)


@pytest.mark.slow
def test_trial_running_at_an_interrupt_is_not_counted_finished(ray_session, tmp_path):
    """Interrupted while one trial trains: that trial stays unfinished in results.json (Tune's
    in-memory status would say TERMINATED) and the stage is not complete, so a rerun resumes it."""
    from diod_ray.sweep import run_stage
    from diod_ray.sweep_plan import Stage

    stage = Stage(
        name="s",
        fixed={"schedule.distill_epochs": 0, "run.evaluate_at_end": False},
        grid={"schedule.burn_in_epochs": [1, 60]},
        epochs_per_trial=60,
    )
    root = str(tmp_path / "sweep")
    meta = {
        "kind": "alpha_burnin",
        "name": "interrupt",
        "preset": "smoke",
        "overrides": {},
        "runs": f"{root}/runs",
        "stage": "s",
        "variants": {},
        "threads": 1,
    }
    data = run_stage(
        stage,
        root=root,
        meta=meta,
        max_concurrent=2,
        bundles=[{"CPU": 0.1}],
        stop_after_trials=1,  # SIGUSR1 once the 1-epoch trial is done, the other still training
    )
    by_epochs = {t["params"]["schedule.burn_in_epochs"]: t for t in data["trials"]}
    assert by_epochs[1]["status"] == "TERMINATED"
    assert by_epochs[60]["status"] != "TERMINATED" and not data["complete"]


def test_seconds_per_epoch_leaves_out_evaluation_and_slot_wait():
    from diod_ray.sweep_report import seconds_per_epoch

    plain = _trial("a", {}, 0.1, 0.2, seconds=100.0)
    queued = _trial("b", {}, 0.1, 0.2, seconds=400.0)
    queued["metrics"]["sweep/slot_wait_s"] = 300.0
    for t in (plain, queued):
        t["epochs_trained"] = 4
    # (100 s - the evaluation of 10 s, reported as burn_in/ and final/ alike) / 4 epochs, for both
    assert seconds_per_epoch({"trials": [plain]}) == pytest.approx(22.5)
    assert seconds_per_epoch({"trials": [queued]}) == pytest.approx(22.5)


@pytest.mark.slow
def test_threshold_sweep_runs_optuna_with_per_epoch_results(ray_session, tmp_path):
    """Optuna + ASHA over p on the smoke preset: per-epoch results (no final/* yet) reach both
    the searcher and ASHA without error, and the report ranks the trials."""
    threshold_p = _script("threshold_p")
    args = ["--preset", "smoke", "--burn-in", "1", "--distill", "2", "--trials", "2"]
    args += ["--storage", str(tmp_path), "--name", "tp"]
    assert threshold_p.main(args) == 0
    root = tmp_path / "tp"
    search = json.loads((root / "search" / "results.json").read_text())
    assert search["complete"] and len(search["trials"]) == 2
    for t in search["trials"]:
        assert 0.5 <= t["params"]["distill.p"] <= 0.99
        # branch at epoch 1, then 2 epochs: an epoch-2 result with val/f1, then the final one
        assert t["metrics"]["training_iteration"] >= 2 and "val/f1" in t["metrics"]
    table = (root / "table.md").read_text()
    assert "| 1 |" in table and "| 2 |" in table and "grace period 2" in table
