"""Sweeps: plans and reuse accounting, ASHA rungs, resources and dry runs, statistics and reports
(fast), and end-to-end Tune sweeps whose trials run Train workers on the smoke preset,
interrupted and restored, with the number of fits at once measured (slow)."""

from __future__ import annotations

import glob
import json
import os

import pytest

from diod_ray.config import load_preset
from diod_ray.preconditions import premise_line
from diod_ray.sweeps import commands
from diod_ray.sweeps.plan import (
    PlanError,
    ablation_plan,
    alpha_burnin_plan,
    asha_grace_period,
    asha_max_t,
    asha_rungs,
    branch_id,
    kept_checkpoint,
    planned_concurrency,
    threshold_plan,
    trial_resources,
)
from diod_ray.sweeps.report.files import write_report
from diod_ray.sweeps.report.results import load_sweep
from diod_ray.sweeps.store import write_json

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
    # the control continues burn-in over the branch's epochs instead of distilling, and restarts
    # warm-up and Adam where the distillation branches do (at their switch, epoch 400)
    assert plan.stages[1].variants["more_burn_in"] == {
        "schedule.burn_in_epochs": 900,
        "schedule.distill_epochs": 0,
        "optim.restart_at_epoch": 400,
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
    from diod_ray.sweeps.driver import trial_config

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
        config = {**stage.fixed, "run.seed": 0, "_variant": variant}
        cfg = trial_config(config, meta, f"t-{variant}")
        assert (cfg.schedule.burn_in_epochs, cfg.schedule.distill_epochs) == (burn_in, distill)
        assert cfg.run.num_workers >= 1  # a sweep trial always trains in Train workers
        assert cfg.run.init_from == kept_checkpoint(str(tmp_path / "burn"), 4)


@pytest.mark.parametrize(
    "distill,rf,rungs",
    [(500, 2, [125, 250]), (4, 2, [1, 2]), (500, 3, [125, 375]), (1, 2, [])],
)
def test_asha_rungs_fall_inside_distillation(distill, rf, rungs):
    """ASHA's clock starts at the distillation branch, so the paper's schedule (400 / 500) and
    the default threshold sweep (3 / 4) get several rungs, not one median cut past burn-in."""
    cfg = load_preset("tri-pd")
    cfg.schedule.burn_in_epochs = 400 if distill == 500 else 3
    cfg.schedule.distill_epochs = distill
    grace, max_t = asha_grace_period(cfg), asha_max_t(cfg)
    assert max_t == distill and 1 <= grace <= max_t
    assert asha_rungs(grace, max_t, rf) == rungs


def _shape(cpus=8.0, gpus=0.0, head=16.0):
    from diod_ray.sweeps.plan import ClusterShape

    return ClusterShape(cpus, gpus, head, True, "test cluster")


def test_resources_and_concurrency_come_from_the_limiting_resource():
    gpu = load_preset("tri-pd")  # 8 GPU workers per run
    res = trial_resources(gpu, driver_resource=True)
    assert res.driver == {"CPU": 0.0, "TRAIN_DRIVER_RESOURCE": 0.01}
    assert res.workers == [{"CPU": 1.0, "GPU": 1.0}] * 8 and res.total["GPU"] == 8
    plan = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0, 1, 2])
    # the cluster's GPUs over a trial's, never every trial (27 here): 64 / 8 = 8 at once
    conc = planned_concurrency(plan, res, "GPU", _shape(gpus=64))
    assert conc.trials == 8 and conc.per_stage == {"burn_in": 8, "distill": 8}
    assert planned_concurrency(plan, res, "GPU", _shape(gpus=71)).trials == 8  # floor
    # none up yet (an autoscaling cluster at rest): one trial, which waits for the autoscaler
    idle = planned_concurrency(plan, res, "GPU", _shape(gpus=0))
    assert idle.trials == 1 and "--cluster-gpus" in idle.notes[0]
    assert planned_concurrency(plan, res, "GPU", _shape(gpus=64), cap=2).trials == 2
    # a stage never runs more than its trials
    small = alpha_burnin_plan([0.2], [200, 300], 500, [0])
    assert planned_concurrency(small, res, "GPU", _shape(gpus=64)).per_stage == {
        "burn_in": 1,
        "distill": 2,
    }
    local = trial_resources(load_preset("smoke"), driver_resource=False)
    assert local.driver["CPU"] == 0.0 and local.driver["memory"] > 0  # no driver resource here
    assert local.workers == [{"CPU": 1.0}] and local.total["CPU"] == 2.0  # worker + data
    assert planned_concurrency(plan, local, "CPU", _shape(cpus=2.0)).trials == 1
    assert planned_concurrency(plan, local, "CPU", _shape(cpus=16.0)).trials == 8


def test_head_memory_bounds_the_plan_and_refuses_what_it_cannot_hold():
    from diod_ray.sweeps.resources import (
        HEAD_MEMORY_PER_TRIAL_GB,
        SWEEP_DRIVER_MEMORY_GB,
        head_memory_needed_gb,
    )

    res = trial_resources(load_preset("tri-pd"), driver_resource=True)
    plan = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0, 1, 2])
    # what the plan needs: the sweep's driver + one driver and one Train controller per trial
    conc = planned_concurrency(plan, res, "GPU", _shape(gpus=64, head=16))
    assert conc.head_memory_needed_gb == pytest.approx(
        SWEEP_DRIVER_MEMORY_GB + 8 * HEAD_MEMORY_PER_TRIAL_GB
    )
    assert conc.to_dict()["head_memory"]["available_gb"] == 16
    # a derived concurrency the head cannot hold is lowered to what it holds
    head = SWEEP_DRIVER_MEMORY_GB + 3.5 * HEAD_MEMORY_PER_TRIAL_GB
    fit = planned_concurrency(plan, res, "GPU", _shape(gpus=64, head=head))
    assert fit.trials == 3 and fit.limited_by.startswith("head memory")
    assert head_memory_needed_gb(3) <= head < head_memory_needed_gb(4)
    # an explicit --max-concurrent it cannot hold is refused, naming what would fit
    with pytest.raises(PlanError, match=r"27 trial\(s\) at once need .* use --max-concurrent 13"):
        planned_concurrency(plan, res, "GPU", _shape(gpus=216, head=16), cap=27)
    # what counts is what runs: a cap above every stage's trials is held by the stages' sizes
    small = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0])  # 3 + 9 trials
    fits = planned_concurrency(small, res, "GPU", _shape(gpus=216, head=16), cap=27)
    assert fits.per_stage == {"burn_in": 3, "distill": 9}
    assert fits.head_memory_needed_gb == pytest.approx(head_memory_needed_gb(9))
    # a head that cannot hold one trial: refused whatever the devices
    with pytest.raises(PlanError, match="a head with more memory"):
        planned_concurrency(plan, res, "GPU", _shape(gpus=64, head=1.0))


def test_searched_stage_leaves_room_for_results_to_inform_proposals():
    res = trial_resources(load_preset("tri-pd"), driver_resource=True)
    for trials, cap in ((16, 4), (6, 1), (3, 1), (40, 10)):
        plan = threshold_plan(400, 500, trials=trials, search_alpha=False, search_ema=False)
        conc = planned_concurrency(plan, res, "GPU", _shape(gpus=1024, head=1000))
        assert conc.per_stage == {"burn_in": 1, "search": cap}, trials


def test_gpu_dry_run_plans_on_a_cluster_with_no_gpus_up(capsys, tmp_path):
    """The shipped autoscaling configs start with 0 GPU nodes: the plan is still made (one trial
    at a time unless --cluster-gpus says what the cluster can grow to), with the resources each
    trial requests, the head memory it needs, and nothing is started."""
    import ray

    ray_was_up = ray.is_initialized()
    shape = json.dumps({"CPU": 8, "GPU": 0, "TRAIN_DRIVER_RESOURCE": 1, "head_memory_gb": 16})
    args = ["--dry-run", "--preset", "tri-pd", "--storage", str(tmp_path), "--trials", "8"]
    rc = commands.threshold_p(args + ["--cluster-resources", shape])
    out = capsys.readouterr().out
    assert rc == 0 and ray.is_initialized() == ray_was_up
    summary = json.loads(out[: out.rindex("}") + 1])
    per_trial = summary["resources"]["per_trial"]
    assert per_trial["driver"] == {"CPU": 0.0, "TRAIN_DRIVER_RESOURCE": 0.01}
    assert per_trial["workers"] == [{"CPU": 1.0, "GPU": 1.0}] * 8
    assert summary["resources"]["max_concurrent_trials"] == 1
    assert "autoscaler" in summary["resources"]["where"]
    assert "[sweep] trials at once: burn_in 1, search 1" in out and "head memory needed" in out
    # the cluster can grow to 64 GPUs: 8 trials' worth, the search stage 8 // 4 = 2 at once
    rc = commands.threshold_p(args + ["--cluster-resources", shape, "--cluster-gpus", "64"])
    out = capsys.readouterr().out
    summary = json.loads(out[: out.rindex("}") + 1])
    assert rc == 0 and summary["resources"]["max_concurrent_trials"] == 8
    assert summary["resources"]["per_stage"] == {"burn_in": 1, "search": 2}
    assert not os.listdir(tmp_path)


def test_dry_run_refuses_a_plan_the_head_cannot_hold(capsys, tmp_path):
    shape = json.dumps({"GPU": 216, "TRAIN_DRIVER_RESOURCE": 1, "head_memory_gb": 16})
    args = ["--dry-run", "--preset", "tri-pd", "--storage", str(tmp_path), "--seeds", "0", "1"]
    rc = commands.alpha_burnin(args + ["--cluster-resources", shape, "--max-concurrent", "27"])
    out, err = capsys.readouterr()
    assert rc != 0 and "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "need" in lines[0] and "--max-concurrent 13" in lines[0], err
    assert not os.listdir(tmp_path)


def test_dry_run_prints_the_reuse_and_starts_nothing(capsys, tmp_path):
    import ray

    ray_was_up = (
        ray.is_initialized()
    )  # the session's Ray may already run; dry-run must not start one

    rc = commands.alpha_burnin(
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
            "resources": {"device": "CPU", "per_trial": {"total": {"CPU": 2.0}}},
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

    assert commands.report([root]) == 0
    table = open(f"{root}/table.md").read()
    # one seed: n = 1 per cell, no interval
    assert "| 0.3 | 16.9 (n=1) → 35.4 (n=1) | 16.9 (n=1) → 35.4 (n=1) |" in table
    assert "| 0.2 | 16.9 (n=1) → – | 16.9 (n=1) → – |" in table
    assert "**2 epochs saved**" in table
    # (50 s - 10 s of evaluation) / 2 epochs = 20 s per burn-in epoch
    assert "measured 20.00 s per burn-in epoch" in table
    rows = open(f"{root}/trials.csv").read().strip().splitlines()
    assert len(rows) == 1 + 6 and "param:objectives.alpha" in rows[0]
    assert open(f"{root}/alpha_burnin.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    meta, stages = load_sweep(root)
    assert set(stages) == {"burn_in", "distill"}


def test_ablation_report_lays_out_table_4ab(tmp_path):
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
    assert "| one-to-one connection | 30.2 (n=1) | 30.2 |" in table
    assert "| end of burn-in | 16.9 (n=1) | 16.9 |" in table
    assert "| offline pseudo-labelling | 26.3 (n=1) | 26.3 |" in table
    assert "| more burn-in instead (control) | 20.0 (n=1) | – |" in table
    assert "DIOD minus the control" in table
    # Table 4(a)'s question: each variant against DIOD's final setting, on the same burn-in
    row = next(ln for ln in table.splitlines() if ln.startswith("| one-to-one connection |"))
    assert row.endswith("| -5.2 (n=1) |"), row  # 30.2 - 35.4
    row = next(ln for ln in table.splitlines() if ln.startswith("| end of burn-in |"))
    assert row.endswith("| – |"), row  # not a distillation variant
    cells = {ln.split(",")[0]: ln.split(",") for ln in open(out["cells"]).read().splitlines()}
    assert float(cells["one_to_one - final"][3]) == pytest.approx(-5.2)
    assert "more_burn_in - final" not in cells
    assert open(out["plot"], "rb").read(4) == b"\x89PNG"


# ---------------------------------------------------------------------------------------------
# statistics over seeds (no Ray)
# ---------------------------------------------------------------------------------------------


def test_t_interval_and_paired_differences():
    from diod_ray.sweeps.report.stats import paired, summarise

    s = summarise([10.0, 12.0, 14.0])
    # mean 12, sd 2, t(0.975, 2) = 4.3027: half-width 4.3027 * 2 / sqrt(3) = 4.968
    assert (s["n"], s["mean"], s["sd"]) == (3, 12.0, 2.0)
    assert s["ci_low"] == pytest.approx(12 - 4.968, abs=1e-3)
    assert s["ci_high"] == pytest.approx(12 + 4.968, abs=1e-3)
    one = summarise([5.0, None, float("nan")])
    assert one["n"] == 1 and one["ci_low"] is None and one["sd"] is None
    # same-seed pairs: a steady gain excludes 0, one that changes sign does not
    up = paired({0: 3.0, 1: 5.1, 2: 4.0}, {0: 1.0, 1: 3.0, 2: 2.0})
    assert up["mean"] == pytest.approx(2.0333, abs=1e-3) and up["excludes_0"]
    mixed = paired({0: 3.0, 1: 1.0, 2: 4.0}, {0: 1.0, 1: 3.0, 2: 2.0})
    assert not mixed["excludes_0"]


def _ablation_report(root: str, trials: list[dict], seeds: list[int]) -> dict[str, str]:
    """Store an ablation sweep of these trials under ``root`` and write its report."""
    write_json(
        f"{root}/sweep.json",
        {
            "kind": "ablations",
            "name": root.rsplit("/", 1)[-1],
            "preset": "smoke",
            "plan": ablation_plan(2, 2, seeds).to_dict(),
        },
    )
    write_json(f"{root}/variants/results.json", {"trials": trials})
    return write_report(root)


def test_ablation_report_gives_intervals_and_paired_differences(tmp_path):
    trials = []
    for seed, base in enumerate((0.20, 0.25, 0.22)):
        for v, gain in (("final", 0.10), ("more_burn_in", 0.01 * (seed - 1))):
            t = _trial(f"{v}{seed}", {"_variant": v, "run.seed": seed}, base, base + gain)
            trials.append(t)
    out = _ablation_report(str(tmp_path / "ab3"), trials, [0, 1, 2])
    table = open(out["table"]).read()
    assert "t-interval" in table and "(n=3)" in table
    cells = open(out["cells"]).read().splitlines()
    assert cells[0] == "cell,metric,n,mean,sd,ci_low,ci_high,excludes_0"
    # DIOD gains exactly 10 points on every seed over its own start: interval [10, 10], marked
    diff = next(r for r in cells if r.startswith("final - end_of_burn_in,f1"))
    assert diff.split(",")[2] == "3" and diff.endswith("True")
    assert "| end of burn-in | 22.3 [" in table and " *" in table


def test_ablation_report_shows_the_teacher_activity_per_variant(tmp_path):
    """The mechanism check beside the effect: kept candidates, motion masks kept and the kept
    candidates' GT precision over seeds, for every branch with a teacher (not the control)."""
    trials = []
    for seed, kept in enumerate((1.0, 2.0, 3.0)):
        for v in ("final", "more_burn_in"):
            t = _trial(f"{v}{seed}", {"_variant": v, "run.seed": seed}, 0.2, 0.3)
            if v == "final":
                t["metrics"].update(
                    {
                        "teacher/kept_per_frame": kept,
                        "teacher/frames_with_kept": 0.5,
                        "teacher/motion_kept_share": 0.4,
                        "teacher/epochs_without_candidates": 0.0,
                        "burn_in/teacher_precision": 0.25,
                        "final/teacher_precision": float("nan"),  # nothing kept on GT frames
                        "final/teacher_kept_area": 0.44,  # one region of 44 % of the frame
                    }
                )
            trials.append(t)
    table = open(_ablation_report(str(tmp_path / "abt"), trials, [0, 1, 2])["table"]).read()
    assert "## The teacher's activity" in table
    section = table.split("## The teacher's activity")[1]
    row = next(line for line in section.splitlines() if line.startswith("| DIOD | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # kept per frame 1, 2, 3: mean 2, sd 1, half-width 4.3027 / sqrt(3) = 2.484
    assert cells[1] == "2.0 [-0.5, 4.5] (n=3)"
    assert cells[2].startswith("50.0 [50.0, 50.0]") and cells[3].startswith("40.0 [")
    assert cells[5].startswith("25.0 [") and cells[6] == "–"  # NaN is no value, not a zero
    assert cells[7] == "44.0 [44.0, 44.0] (n=3)"
    # the control has no teacher: no row for it
    assert "more burn-in instead (control) | " not in section


# ---------------------------------------------------------------------------------------------
# end to end: Tune trials of Train workers on the smoke preset (slow)
# ---------------------------------------------------------------------------------------------


def _fit_intervals(runs_root: str, interrupted_at: float) -> list[tuple[float, float]]:
    """(start, end) of every fit the trials recorded; a fit cut off by the interrupt has no end
    and ends, at the latest, when the interrupted invocation returned."""
    out = []
    for f in glob.glob(os.path.join(runs_root, "*", "fits", "*.json")):
        t = json.loads(open(f).read())
        out.append((t["start"], t["end"] if t["end"] is not None else interrupted_at))
    return out


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_alpha_burnin_sweep_interrupted_and_restored_never_oversubscribes(
    ray_session, tmp_path, capfd
):
    """The user's path: Train workers holding a CPU each, at most --max-concurrent fits at
    once (measured from the trials' own fit times), an interrupt after the first trial, and the
    same command restoring the stage and finishing the sweep without retraining that trial."""
    import time

    args = ["--preset", "smoke", "--alphas", "0.2", "0.3", "--burn-in", "1", "--distill", "1"]
    args += ["--storage", str(tmp_path), "--name", "grid", "--max-concurrent", "1"]
    args += ["--set", "run.measure_premise=true"]
    root = tmp_path / "grid"
    assert commands.alpha_burnin(args + ["--stop-after-trials", "1"]) == 3
    interrupted_at = time.time()
    first = json.loads((root / "burn_in" / "results.json").read_text())
    done = [t for t in first["trials"] if t["status"] == "TERMINATED"]
    assert len(done) == 1 and not first["complete"]
    kept = os.path.join(done[0]["train_run"], "kept", "burn_in_epoch_1", "state.pt")
    mtime = os.path.getmtime(kept)

    stopped = "".join(capfd.readouterr())
    assert "[sweep] stopping after 1 trial(s) as asked; run again to resume" in stopped
    assert "run the same command again to resume" in stopped, stopped[-3000:]
    # the data's premise, measured once before the first trial and read back on resume
    assert "[sweep] premise of the data: " in stopped
    premise = json.loads((root / "premise.json").read_text())
    premise_mtime = os.path.getmtime(root / "premise.json")
    assert commands.alpha_burnin(args) == 0
    console = "".join(capfd.readouterr())
    # no Ray Tune console output, neither its interrupt and restore messages (Tuner.restore is
    # not the user's way back: the same command is) nor its per-stage box and path hints
    for noise in (
        "Configuration for experiment",
        "View detailed results here",
        "To visualize your results with TensorBoard",
        "Wrote the latest version of all result files",
        "Failed to fetch metrics",
        "Trial status",
    ):
        assert noise not in stopped and noise not in console, noise
    for noise in ("Stop signal received", "has been interrupted", "Tuner.restore", "Trials did"):
        assert noise not in stopped, noise
    assert "[sweep] stage burn_in: resuming" in console and "Restoring the run" not in console
    assert os.path.getmtime(kept) == mtime  # the finished trial was not trained again
    # the console: a line per trial start and end, not Tune's 30-second status table
    ends = [ln for ln in console.splitlines() if ln.startswith("[sweep] distill ")]
    assert sum(" started" in ln for ln in ends) == 2, console[-3000:]
    assert sum("finished, test F1@50 " in ln for ln in ends) == 2, console[-3000:]
    assert "alpha=0.2" in console
    assert f"live TensorBoard of its trials: tensorboard --logdir {root / 'runs'}" in console
    burn = json.loads((root / "burn_in" / "results.json").read_text())
    assert burn["complete"] and len(burn["trials"]) == 2
    dist = json.loads((root / "distill" / "results.json").read_text())
    assert dist["complete"] and len(dist["trials"]) == 2
    for t in dist["trials"]:
        m = t["metrics"]
        assert "burn_in/f1" in m and "final/f1" in m and m["distill_epoch"] == 1
        assert m["epoch"] == 2 and t["epochs_trained"] == 1
    fits = _fit_intervals(str(root / "runs"), interrupted_at)
    assert len(fits) >= 4 and _most_at_once(fits) == 1
    for name in ("table.md", "trials.csv", "cells.csv"):
        assert (root / name).exists()
    assert os.path.getmtime(root / "premise.json") == premise_mtime
    assert premise_line(premise, "[sweep]") in console
    assert "Premise of the data: " in (root / "table.md").read_text()
    assert (root / "alpha_burnin.png").read_bytes()[:4] == b"\x89PNG"


def test_a_premise_stored_as_not_measured_is_measured_again(smoke_shards, tmp_path, capsys):
    """premise.json holding a measurement is read back as it is; one holding "not measured"
    (scikit-learn was missing when the sweep started) is measured again and replaced."""
    from diod_ray.config import apply_overrides
    from diod_ray.sweeps.cli import sweep_premise

    cfg = apply_overrides(load_preset("smoke"), {"data.uri": smoke_shards})
    path = tmp_path / "premise.json"
    path.write_text(json.dumps({"skipped": "scikit-learn is not installed", "extra": "premise"}))
    premise = sweep_premise(cfg, str(tmp_path))
    assert premise["premise_holds"] in (True, False), premise  # the smoke data has GT on val
    assert json.loads(path.read_text()) == premise
    assert "says the premise was not measured (scikit-learn is not installed)" in (
        capsys.readouterr().out
    )
    measured = {**premise, "premise_holds": not premise["premise_holds"]}  # not what it measures
    path.write_text(json.dumps(measured))
    assert sweep_premise(cfg, str(tmp_path)) == measured
    assert capsys.readouterr().out == ""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_threshold_sweep_selects_on_validation(ray_session, tmp_path):
    """Optuna + ASHA over p on one objective (val/f1) set in TuneConfig: every per-epoch result
    reaches both without error; ASHA's clock is distill_epoch."""
    args = ["--preset", "smoke", "--burn-in", "1", "--distill", "2", "--trials", "2"]
    args += ["--storage", str(tmp_path), "--name", "tp", "--max-concurrent", "1"]
    assert commands.threshold_p(args) == 0
    root = tmp_path / "tp"
    search = json.loads((root / "search" / "results.json").read_text())
    assert search["complete"] and len(search["trials"]) == 2
    for t in search["trials"]:
        assert 0.5 <= t["params"]["distill.p"] <= 0.99
        assert "val/f1" in t["metrics"] and t["metrics"]["distill_epoch"] >= 1
    sweep = json.loads((root / "sweep.json").read_text())
    assert sweep["asha"]["metric"] == "val/f1" and sweep["asha"]["time_attr"] == "distill_epoch"
    assert "val/f1" in (root / "table.md").read_text()
