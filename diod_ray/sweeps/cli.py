"""The flags and run shared by the three sweep commands (``python -m diod_ray.sweeps
alpha-burnin | threshold-p | ablations``, :mod:`diod_ray.sweeps.commands`, and the scripts
``sweeps/*.py``): plan -> (--dry-run | stages -> report).

    python sweeps/alpha_burnin.py --preset smoke --alphas 0.2 0.4 --burn-in 2 4 --seeds 0 1 2
    python sweeps/threshold_p.py --preset tri-pd --max-concurrent 4 --dry-run \\
        --cluster-resources '{"CPU": 8, "GPU": 0, "TRAIN_DRIVER_RESOURCE": 1}'

docs/sweeps.md says how a sweep maps onto a cluster (drivers, workers, GPUs, concurrency).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from diod_ray.config import (
    Config,
    add_set_argument,
    apply_overrides,
    load_config,
    parse_set,
    preset_names,
)
from diod_ray.preconditions import premise_line
from diod_ray.storage import normalise_uri
from diod_ray.sweeps.cluster import sweep_cluster
from diod_ray.sweeps.driver import RESULTS_FILE, RUNS_DIR, SweepError, run_stage
from diod_ray.sweeps.plan import (
    MODE,
    OBJECTIVE,
    TIME_ATTR,
    SweepPlan,
    asha_grace_period,
    asha_max_t,
    asha_rungs,
    branch_id,
    device_hours,
    device_kind,
    planned_concurrency,
    trial_resources,
)
from diod_ray.sweeps.report.files import write_report
from diod_ray.sweeps.report.results import PREMISE_FILE, SWEEP_FILE, seconds_per_epoch
from diod_ray.sweeps.store import exists, join, read_json, write_json


def base_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    """The preset + --config + --set of the command, and the --set overrides as a typed dict."""
    overrides = dict(parse_set(s) for s in (args.sets or []))
    cfg = load_config(args.preset, args.config, None)
    return apply_overrides(cfg, overrides), overrides


def sweep_root(args: argparse.Namespace) -> str:
    return normalise_uri(f"{args.storage.rstrip('/')}/{args.name}")


def describe(
    args: argparse.Namespace, plan: SweepPlan, cfg: Config, hint: float | None
) -> dict[str, Any]:
    """The plan with the resources each trial requests, the cluster it plans for, the
    concurrency (per stage, what limits it, the head memory it needs) and estimated cost.
    Raises PlanError for a plan the head's memory cannot hold."""
    shape = sweep_cluster(args)
    res = trial_resources(cfg, shape.driver_resource)
    kind = device_kind(cfg)
    conc = planned_concurrency(plan, res, kind, shape, args.max_concurrent)
    out = plan.to_dict()
    out["resources"] = {
        "per_trial": res.to_dict(),
        **conc.to_dict(),
        "device": kind,
        "driver_resource": shape.driver_resource,
        "cluster": {"CPU": shape.cpus, "GPU": shape.gpus, "source": shape.source},
        "where": "this machine"
        if shape.source == "this machine"
        else "cluster (trials wait for the autoscaler)",
    }
    if hint:
        total = res.total
        out["estimate"] = {
            "seconds_per_epoch": hint,
            f"{kind}_hours": round(device_hours(plan.epochs, hint, total, kind), 4),
            f"naive_{kind}_hours": round(device_hours(plan.naive_epochs, hint, total, kind), 4),
            f"saved_{kind}_hours": round(device_hours(plan.epochs_saved, hint, total, kind), 4),
            "wall_hours_lower_bound": round(
                sum(
                    -(-s.num_trials // conc.per_stage[s.name]) * s.epochs_per_trial * hint
                    for s in plan.stages
                )
                / 3600,
                4,
            ),
        }
    return out


def concurrency_line(summary: dict[str, Any]) -> str:
    """One line: trials at once per stage, what limits them, and the head memory they need."""
    r = summary["resources"]
    mem = r["head_memory"]
    have = "unknown: pass --head-memory-gb to check it"
    if mem["available_gb"] is not None:
        have = f"{mem['available_gb']:g} GB available"
    stages = ", ".join(f"{k} {v}" for k, v in r["per_stage"].items())
    return (
        f"[sweep] trials at once: {stages} (limited by {r['limited_by']}); head memory needed "
        f"{mem['needed_gb']:g} GB ({mem['per_trial_gb']:g} GB per running trial + "
        f"{mem['sweep_driver_gb']:g} GB for this driver), {have}"
    )


def run_sweep(args: argparse.Namespace, plan: SweepPlan, *, search=None) -> dict[str, Any]:
    """Run a plan's stages in order (each resumable), then write the report."""
    cfg, overrides = base_config(args)
    root = sweep_root(args)
    if cfg.data.generate_if_missing:
        from diod_ray.data.synthetic.generate import ensure_synthetic

        ensure_synthetic(cfg)
    from diod_ray.training.driver import ensure_ray

    ensure_ray()
    summary = describe(args, plan, cfg, None)
    print(concurrency_line(summary), flush=True)
    per_stage = summary["resources"]["per_stage"]
    res = trial_resources(cfg, summary["resources"]["driver_resource"])
    sweep = {
        "kind": plan.kind,
        "name": args.name,
        "preset": args.preset,
        "config_file": os.path.abspath(args.config) if args.config else None,
        "overrides": overrides,
        "runs": f"{root}/{RUNS_DIR}",
    }
    stored = {**sweep, "plan": plan.to_dict(), "resources": summary["resources"]}
    if search:
        stored["asha"] = search["asha"]
    previous = join(root, SWEEP_FILE)
    if exists(previous, cfg.storage):
        old = read_json(previous, cfg.storage)
        if old.get("plan") != json.loads(json.dumps(plan.to_dict(), default=str)) or old.get(
            "overrides"
        ) != json.loads(json.dumps(overrides)):
            raise SweepError(
                f"{previous} holds a different sweep (plan or --set differ); use another --name "
                "or --storage, or delete that directory to start over"
            )
    write_json(previous, stored, cfg.storage)
    if cfg.run.measure_premise:
        print(premise_line(sweep_premise(cfg, root), "[sweep]"), flush=True)
    done: dict[str, dict[str, Any]] = {}
    for stage in plan.stages:
        meta = {**sweep, "stage": stage.name, "variants": stage.variants}
        if stage.branch_key is not None:
            runs = {
                branch_id(t["params"], stage.branch_key): t["train_run"]
                for t in done["burn_in"]["trials"]
                if t["status"] == "TERMINATED" and not t["error"]
            }
            meta.update(branch_key=stage.branch_key, branch_runs=runs)
        kwargs: dict[str, Any] = {}
        if stage.name == "search" and search:
            stage_cfg = apply_overrides(cfg, stage.fixed)
            kwargs = dict(
                search_space=search["space"],
                search_alg=search["search_alg"](stage_cfg),
                scheduler=search["scheduler"](stage_cfg),
            )
        data = run_stage(
            stage,
            root=root,
            sweep=meta,
            res=res,
            max_concurrent=per_stage[stage.name],
            max_failures=args.max_failures,
            stop_after_trials=args.stop_after_trials,
            **kwargs,
        )
        done[stage.name] = data
        if not data["complete"]:
            report = write_report(root, cfg.storage)
            print(
                f"[sweep] stage {stage.name} did not finish (interrupted or failed trials); "
                f"run the same command again to resume. Partial report: {report['table']}",
                flush=True,
            )
            return {"root": root, "complete": False, "report": report}
    report = write_report(root, cfg.storage)
    print(f"[sweep] done: {report['table']}, {report['csv']}, {report['plot']}", flush=True)
    return {"root": root, "complete": True, "report": report}


def sweep_premise(cfg: Config, root: str) -> dict[str, Any]:
    """The data's premise (diod_ray/data/inspection/premise.py), measured once per sweep before
    its first trial and kept in ``<root>/premise.json``; a resumed sweep reads a measurement
    back. One stored as not measured (``skipped``: no GT on val, scikit-learn missing) is
    measured again, since what stopped it may have changed, and the new one replaces it (said
    in one line). Every row of the report carries it in its verdict ("untestable: premise,
    ...")."""
    uri = join(root, PREMISE_FILE)
    stored = read_json(uri, cfg.storage) if exists(uri, cfg.storage) else None
    if stored is not None and stored.get("premise_holds") is not None:
        return stored
    from diod_ray.data.inspection.summary import benchmark_premise

    if stored is not None:
        why = stored.get("skipped", "no verdict")
        print(f"[sweep] {uri} says the premise was not measured ({why}); measuring it again")
    premise = benchmark_premise(cfg)
    write_json(uri, premise, cfg.storage)
    return premise


def sweep_parser(prog: str, description: str, default_name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--preset", default="synthetic", help=f"preset ({', '.join(preset_names())})")
    p.add_argument("--config", default=None, help="YAML file merged over the preset")
    add_set_argument(p, help="dotted override applied to every trial, e.g. --set data.batch_size=4")
    p.add_argument(
        "--storage", default="~/diod_ray_sweeps", help="local path or s3://bucket/prefix"
    )
    p.add_argument(
        "--name", default=default_name, help="the same (storage, name) resumes an interrupted sweep"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="run.seed values (default 0)")
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        help="trials at once (default: the cluster's GPUs, or CPUs for a CPU preset, over one "
        "trial's, at least 1, within the head's memory; a searched stage at most a quarter of "
        "its trials); refused when the head's memory cannot hold that many",
    )
    p.add_argument(
        "--cluster-resources",
        default=None,
        help="plan for this cluster instead of this machine or RAY_ADDRESS's, as JSON, e.g. "
        '\'{"CPU": 8, "GPU": 64, "TRAIN_DRIVER_RESOURCE": 1, "head_memory_gb": 16}\'',
    )
    p.add_argument(
        "--cluster-gpus",
        type=float,
        default=None,
        help="GPUs the cluster can have (its autoscaler's maximum; default: those up now)",
    )
    p.add_argument(
        "--cluster-cpus",
        type=float,
        default=None,
        help="CPUs the cluster can have (default: those up now, or this machine's)",
    )
    p.add_argument(
        "--head-memory-gb",
        type=float,
        default=None,
        help="memory of the node that runs the trial drivers (default: its Ray memory "
        "resource, or this machine's memory)",
    )
    p.add_argument("--max-failures", type=int, default=0, help="Tune-level retries per trial")
    p.add_argument(
        "--stop-after-trials",
        type=int,
        default=None,
        help="stop gracefully after N trials finish (resume later with the same command)",
    )
    p.add_argument("--seconds-per-epoch", type=float, default=None, help="for --dry-run's estimate")
    p.add_argument("--dry-run", action="store_true", help="print the plan and start nothing")
    return p


def dry_run(args: argparse.Namespace, plan: SweepPlan) -> dict[str, Any]:
    cfg, _ = base_config(args)
    hint, root = args.seconds_per_epoch, sweep_root(args)
    uri = join(root, "burn_in", RESULTS_FILE)
    if hint is None and exists(uri, cfg.storage):
        hint = seconds_per_epoch(read_json(uri, cfg.storage))
    summary = describe(args, plan, cfg, hint)
    summary["sweep_dir"] = root
    print(json.dumps(summary, indent=2, default=str))
    print(concurrency_line(summary), flush=True)
    ep = summary["epochs"]
    print(
        f"\nreuse: {ep['burn_in']} burn-in + {ep['distill']} distillation epochs instead of "
        f"{ep['naive_burn_in']} + {ep['naive_distill']} (saves {ep['saved']} epochs)",
        flush=True,
    )
    return summary


def main_for(
    build_plan, prog, description, default_name, add_args=None, search_factory=None, argv=None
) -> int:
    """Shared main of the three sweeps (:mod:`diod_ray.sweeps.commands`): parse, build the plan,
    then --dry-run or run. Errors propagate: the command prints a project error as one line."""
    parser = sweep_parser(prog, description, default_name)
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    plan = build_plan(args)
    if args.dry_run:
        dry_run(args, plan)
        return 0
    out = run_sweep(args, plan, search=search_factory(args) if search_factory else None)
    print(json.dumps(out, default=str), flush=True)
    return 0 if out["complete"] else 3


def threshold_search(args: argparse.Namespace) -> dict[str, Any]:
    """Optuna (TPE) over p, optionally the EMA rate and alpha; ASHA on the same objective
    (``TuneConfig(metric, mode)``) with its clock started at the distillation branch."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space: dict[str, Any] = {"distill.p": tune.uniform(args.p_min, args.p_max)}
    if args.search_ema:
        space["distill.ema"] = tune.uniform(args.ema_min, args.ema_max)
    if args.search_alpha:
        space["objectives.alpha"] = tune.uniform(args.alpha_min, args.alpha_max)
    cfg, _ = base_config(args)
    cfg = apply_overrides(
        cfg, {"schedule.burn_in_epochs": args.burn_in, "schedule.distill_epochs": args.distill}
    )
    grace, max_t = asha_grace_period(cfg), asha_max_t(cfg)
    return {
        "space": space,
        "search_alg": lambda c: OptunaSearch(seed=args.search_seed),
        "scheduler": lambda c: ASHAScheduler(
            time_attr=TIME_ATTR,
            grace_period=asha_grace_period(c),
            max_t=asha_max_t(c),
            reduction_factor=args.reduction_factor,
            # a trial at max_t ends with its fit; a STOP there would kill the driver before
            # fit() returns, and Ray 2.60 then leaves the Train workers' placement group behind
            stop_last_trials=False,
        ),
        "asha": {
            "metric": OBJECTIVE,
            "mode": MODE,
            "time_attr": TIME_ATTR,
            "grace_period": grace,
            "max_t": max_t,
            "reduction_factor": args.reduction_factor,
            "rungs": asha_rungs(grace, max_t, args.reduction_factor),
        },
    }
