"""Sweep plans as plain data: which trials a sweep runs, what it reuses, what it costs.

No Ray here: the plans are built, printed by ``--dry-run`` and tested without a cluster.
:mod:`diod_ray.sweeps.driver` turns a plan's stages into Ray Tune experiments; docs/sweeps.md
says how a plan maps onto a cluster.

The reuse trick (Table 4(c) and 4(a-b)): a burn-in run to 400 epochs passes through 200 and 300
on the way, and distillation variants all start from the same end of burn-in. So one burn-in run
per (alpha, seed) keeps checkpoints at every grid length (``schedule.keep_burn_in_epochs``) and
every distillation trial branches from one (``run.init_from``, ``schedule.burn_in_epochs=E``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from diod_ray.config import Config
from diod_ray.sweeps.errors import PlanError

# Table 4(a)/(b) variants: dotted overrides applied to the distillation branch
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "final": {},
    "one_to_one": {"distill.connection": "one_to_one"},
    "no_motion_masks": {"distill.use_motion_masks": False},
    "offline": {"distill.offline": True},
    # control, not in the paper: the same branch epochs spent on more burn-in (no teacher), so a
    # gain of DIOD over "end of burn-in" can be told apart from the gain of training longer;
    # its schedule depends on the plan's lengths and is filled in by ablation_plan
    "more_burn_in": {},
}


# ============================================================================================
# Stages and trials
# ============================================================================================


@dataclass
class Stage:
    """One Tune experiment of a sweep.

    ``fixed``: dotted overrides common to all trials. ``grid``: dotted key -> values, expanded as a
    cross product by Tune's grid search. ``branch_key``: for a stage that branches from kept
    burn-in checkpoints, the keys that name the burn-in run (``[]``: the only one); a branch
    starts from that run's checkpoint at its own ``schedule.burn_in_epochs``.
    ``variants``: named override sets selected by the grid key ``_variant``.
    """

    name: str
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    epochs_per_trial: int
    branch_key: list[str] | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a search stage (Optuna) has no grid: it runs num_samples trials
    num_samples: int = 0

    @property
    def num_trials(self) -> int:
        if self.num_samples:
            return self.num_samples
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 1

    @property
    def epochs(self) -> int:
        return self.num_trials * self.epochs_per_trial


def branch_id(params: dict[str, Any], keys: list[str]) -> str:
    """The name of the burn-in run a trial branches from: its values of ``keys``, as JSON."""
    return json.dumps([params[k] for k in keys])


def kept_checkpoint(run_dir: str, epoch: int) -> str:
    """Where the training loop keeps the burn-in checkpoint of epoch ``epoch`` of a run."""
    return f"{run_dir.rstrip('/')}/kept/burn_in_epoch_{epoch}"


@dataclass
class SweepPlan:
    """The stages of a sweep plus the naive plan it replaces (for the reuse accounting)."""

    kind: str
    stages: list[Stage]
    # epochs the same table costs without reuse: every trial trains its own burn-in
    naive_burn_in_epochs: int
    naive_distill_epochs: int
    notes: list[str] = field(default_factory=list)

    @property
    def burn_in_epochs(self) -> int:
        return sum(s.epochs for s in self.stages if s.name == "burn_in")

    @property
    def distill_epochs(self) -> int:
        return sum(s.epochs for s in self.stages if s.name != "burn_in")

    @property
    def naive_epochs(self) -> int:
        return self.naive_burn_in_epochs + self.naive_distill_epochs

    @property
    def epochs(self) -> int:
        return self.burn_in_epochs + self.distill_epochs

    @property
    def epochs_saved(self) -> int:
        return self.naive_epochs - self.epochs

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stages": [
                {
                    "name": s.name,
                    "fixed": s.fixed,
                    "grid": s.grid,
                    "trials": s.num_trials,
                    "search": bool(s.num_samples),
                    "epochs_per_trial": s.epochs_per_trial,
                    "branch_key": s.branch_key,
                    "variants": s.variants,
                }
                for s in self.stages
            ],
            "epochs": {
                "burn_in": self.burn_in_epochs,
                "distill": self.distill_epochs,
                "naive_burn_in": self.naive_burn_in_epochs,
                "naive_distill": self.naive_distill_epochs,
                "saved": self.epochs_saved,
            },
            "notes": self.notes,
        }


def burn_in_stage(
    lengths: list[int], grid: dict[str, list[Any]], fixed: dict[str, Any] | None = None
) -> Stage:
    """The shared burn-in stage: each trial trains ``max(lengths)`` burn-in epochs and no
    distillation, keeping a checkpoint at every length in ``lengths`` for the branches."""
    return Stage(
        name="burn_in",
        fixed={
            "schedule.burn_in_epochs": max(lengths),
            "schedule.distill_epochs": 0,
            "schedule.keep_burn_in_epochs": sorted(lengths),
            **(fixed or {}),
        },
        grid=grid,
        epochs_per_trial=max(lengths),
    )


def _check_positive(name: str, values: list[int]) -> None:
    if not values or any(v < 1 for v in values):
        raise PlanError(f"{name}: expected one or more epoch counts >= 1, got {values}")


def alpha_burnin_plan(
    alphas: list[float], burn_ins: list[int], distill: int, seeds: list[int]
) -> SweepPlan:
    """Table 4(c): one burn-in run per (alpha, seed) to the longest length, keeping a checkpoint
    at every length; then one distillation branch per (alpha, burn-in length, seed)."""
    _check_positive("--burn-in", burn_ins)
    _check_positive("--distill", [distill])
    if not alphas or not seeds:
        raise PlanError("--alphas and --seeds need at least one value each")
    lengths = sorted(set(burn_ins))
    stage1 = burn_in_stage(
        lengths, grid={"objectives.alpha": list(alphas), "run.seed": list(seeds)}
    )
    stage2 = Stage(
        name="distill",
        fixed={"schedule.distill_epochs": distill, "schedule.keep_burn_in_epochs": []},
        grid={
            "objectives.alpha": list(alphas),
            "schedule.burn_in_epochs": lengths,
            "run.seed": list(seeds),
        },
        epochs_per_trial=distill,
        branch_key=["objectives.alpha", "run.seed"],
    )
    cells = len(alphas) * len(seeds)
    return SweepPlan(
        kind="alpha_burnin",
        stages=[stage1, stage2],
        naive_burn_in_epochs=cells * sum(lengths),
        naive_distill_epochs=cells * len(lengths) * distill,
        notes=[
            f"burn-in: {cells} run(s) of {lengths[-1]} epochs keep checkpoints at {lengths}",
            f"distillation: {stage2.num_trials} branch(es) of {distill} epochs from those checkpoints",
        ],
    )


def _variant_overrides(name: str, burn_in: int, distill: int) -> dict[str, Any]:
    """The dotted overrides of one ablation variant for a plan of these lengths."""
    if name == "more_burn_in":
        # the branch resumes at the end of epoch `burn_in` and keeps burning in for `distill`
        # epochs; its warm-up and Adam restart where the distillation branches' do (the switch,
        # optim.restart_at_epoch), so it sees the same learning rate as they do
        return {
            "schedule.burn_in_epochs": burn_in + distill,
            "schedule.distill_epochs": 0,
            "optim.restart_at_epoch": burn_in,
        }
    return dict(ABLATION_VARIANTS[name])


def ablation_plan(
    burn_in: int, distill: int, seeds: list[int], variants: list[str] | None = None
) -> SweepPlan:
    """Table 4(a) and 4(b): one burn-in per seed, every variant a distillation branch of it."""
    _check_positive("--burn-in", [burn_in])
    _check_positive("--distill", [distill])
    names = list(variants or ABLATION_VARIANTS)
    unknown = [v for v in names if v not in ABLATION_VARIANTS]
    if unknown:
        raise PlanError(f"--variants: unknown {unknown}; choose from {list(ABLATION_VARIANTS)}")
    stage1 = burn_in_stage([burn_in], grid={"run.seed": list(seeds)})
    stage2 = Stage(
        name="variants",
        fixed={
            "schedule.burn_in_epochs": burn_in,
            "schedule.distill_epochs": distill,
            "schedule.keep_burn_in_epochs": [],
        },
        grid={"_variant": names, "run.seed": list(seeds)},
        epochs_per_trial=distill,
        branch_key=["run.seed"],
        variants={n: _variant_overrides(n, burn_in, distill) for n in names},
    )
    return SweepPlan(
        kind="ablations",
        stages=[stage1, stage2],
        naive_burn_in_epochs=len(names) * len(seeds) * burn_in,
        naive_distill_epochs=len(names) * len(seeds) * distill,
        notes=[
            f"burn-in: {len(seeds)} run(s) of {burn_in} epochs",
            f"variants {names}: each a distillation branch of {distill} epochs",
            "'end of burn-in' (Table 4(b)) is the evaluation every branch makes at its start",
        ],
    )


def threshold_plan(
    burn_in: int,
    distill: int,
    trials: int,
    search_alpha: bool,
    search_ema: bool,
    seeds: list[int] = (0,),
) -> SweepPlan:
    """Optuna over p (and optionally the EMA rate, alpha). p and the EMA rate act only in
    distillation, so without alpha all trials branch from one burn-in; alpha changes burn-in,
    so searching it means full runs."""
    _check_positive("--burn-in", [burn_in])
    _check_positive("--distill", [distill])
    if trials < 1:
        raise PlanError(f"--trials: expected >= 1, got {trials}")
    if len(seeds) != 1:
        # Optuna proposes the points, so seeds cannot be a grid axis of the search; repeat the
        # chosen p over seeds with sweeps/ablations.py or sweeps/alpha_burnin.py instead
        raise PlanError(f"--seeds: the threshold search runs one seed, got {list(seeds)}")
    seed = {"run.seed": int(seeds[0])}
    naive = dict(naive_burn_in_epochs=trials * burn_in, naive_distill_epochs=trials * distill)
    searched = ["distill.p"] + (["distill.ema"] if search_ema else [])
    if search_alpha:
        searched.append("objectives.alpha")
        search = Stage(
            name="search",
            fixed={
                "schedule.burn_in_epochs": burn_in,
                "schedule.distill_epochs": distill,
                "run.val_every_epochs": 1,
                **seed,
            },
            grid={},
            epochs_per_trial=burn_in + distill,
            num_samples=trials,
        )
        plan = SweepPlan("threshold_p", [search], **naive)
        plan.notes.append("alpha is searched: every trial trains its own burn-in (no reuse)")
    else:
        burn = burn_in_stage([burn_in], grid={}, fixed=seed)
        search = Stage(
            name="search",
            fixed={
                "schedule.burn_in_epochs": burn_in,
                "schedule.distill_epochs": distill,
                "schedule.keep_burn_in_epochs": [],
                # the per-epoch validation (val/*) that Optuna and ASHA select on
                "run.val_every_epochs": 1,
                **seed,
            },
            grid={},
            epochs_per_trial=distill,
            branch_key=[],
            num_samples=trials,
        )
        plan = SweepPlan("threshold_p", [burn, search], **naive)
        plan.notes.append(
            f"{' and '.join(searched)} act only in distillation: one burn-in of {burn_in} "
            "epochs, every trial a branch of it"
        )
    plan.notes.append(
        f"Optuna (TPE) over {searched}, {trials} trials; Optuna and ASHA select on {OBJECTIVE}"
    )
    return plan


# ============================================================================================
# Objective and early stopping (one metric for Optuna and ASHA, on the validation split)
# ============================================================================================

# what Optuna maximises and ASHA compares: the loop's per-epoch validation F1@50; the test split
# (final/*) is only reported (docs/sweeps.md, "Selection")
OBJECTIVE = "val/f1"
MODE = "max"
# ASHA's clock: epochs since the start of the distillation branch, reported by the loop; burn-in
# epochs read 0, so no trial is judged before distillation has run
TIME_ATTR = "distill_epoch"


def asha_max_t(cfg: Config) -> int:
    return max(1, cfg.schedule.distill_epochs)


def asha_grace_period(cfg: Config) -> int:
    """A quarter of distillation (at least one epoch), counted from the start of distillation."""
    return min(max(1, cfg.schedule.distill_epochs // 4), asha_max_t(cfg))


def asha_rungs(grace_period: int, max_t: int, reduction_factor: float) -> list[float]:
    """The milestones (in ``TIME_ATTR`` units) where Ray's ASHA (``AsyncHyperBandScheduler``,
    one bracket) compares trials and stops the worse ``1 - 1/reduction_factor``: its formula
    ``grace * rf**k`` for ``k < int(log(max_t / grace) / log(rf) + 1)``, without ``max_t``
    itself, where every trial ends anyway. Paper schedule (distill 500, grace 125, rf 2):
    [125, 250]; the default threshold sweep (distill 4, grace 1, rf 2): [1, 2]."""
    n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [
        grace_period * reduction_factor**k
        for k in range(n)
        if grace_period * reduction_factor**k < max_t
    ]


# resources each trial requests and the concurrency, re-exported for the sweeps' callers
from diod_ray.sweeps.resources import (  # noqa: E402
    DRIVER_RESOURCE,
    ClusterShape,
    Concurrency,
    TrialResources,
    device_hours,
    device_kind,
    planned_concurrency,
    search_cap,
    train_workers,
    trial_resources,
)

__all__ = [
    "DRIVER_RESOURCE",
    "ClusterShape",
    "Concurrency",
    "PlanError",
    "TrialResources",
    "device_hours",
    "device_kind",
    "planned_concurrency",
    "search_cap",
    "train_workers",
    "trial_resources",
]
