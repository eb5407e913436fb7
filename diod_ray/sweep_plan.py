"""Sweep plans as plain data: which trials a sweep runs, what it reuses, what it costs.

No Ray here: the plans are built, printed by ``--dry-run`` and tested without a cluster.
``diod_ray/sweep.py`` turns a plan's stages into Ray Tune experiments.

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

# CPUs a Tune trial's own process (the Train driver) reserves; the training runs elsewhere:
# in the Train workers (run.num_workers >= 1) or in a local-mode task (run.num_workers = 0)
DRIVER_CPUS = 0.1
# CPUs left free per trial for its Ray Data read/decode tasks (each asks for 1 CPU)
DATA_CPUS = 1.0

# Table 4 of the paper (TRI-PD test set, F1@50), quoted beside our numbers in the reports
PAPER_TABLE_4C = {  # (alpha, burn-in epochs) -> (F1 at end of burn-in, F1 after 500 distillation epochs)
    (0.2, 200): (12.7, 29.3),
    (0.2, 300): (15.5, 26.2),
    (0.2, 400): (15.6, 23.6),
    (0.3, 200): (14.6, 30.7),
    (0.3, 300): (17.2, 33.9),
    (0.3, 400): (16.9, 35.4),
    (0.4, 200): (15.5, 32.7),
    (0.4, 300): (17.1, 33.5),
    (0.4, 400): (18.8, 33.7),
}
PAPER_TABLE_4A = {"one_to_one": 30.2, "no_motion_masks": 17.8, "final": 35.4}
PAPER_TABLE_4B = {"end_of_burn_in": 16.9, "offline": 26.3, "final": 35.4}

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
ABLATION_LABELS = {
    "one_to_one": "one-to-one connection",
    "no_motion_masks": "DIOD (w/o motion masks)",
    "final": "DIOD (final setting)",
    "end_of_burn_in": "end of burn-in",
    "offline": "offline pseudo-labelling",
    "more_burn_in": "more burn-in instead (control)",
}


class PlanError(ValueError):
    """A sweep argument is invalid; the message names the option."""


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
    stage1 = Stage(
        name="burn_in",
        fixed={
            "schedule.burn_in_epochs": lengths[-1],
            "schedule.distill_epochs": 0,
            "schedule.keep_burn_in_epochs": lengths,
        },
        grid={"objectives.alpha": list(alphas), "run.seed": list(seeds)},
        epochs_per_trial=lengths[-1],
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
        # epochs; the LR follows the global step, so it sees the same LR as the other branches
        return {"schedule.burn_in_epochs": burn_in + distill, "schedule.distill_epochs": 0}
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
    stage1 = Stage(
        name="burn_in",
        fixed={
            "schedule.burn_in_epochs": burn_in,
            "schedule.distill_epochs": 0,
            "schedule.keep_burn_in_epochs": [burn_in],
        },
        grid={"run.seed": list(seeds)},
        epochs_per_trial=burn_in,
    )
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
    burn_in: int, distill: int, trials: int, search_alpha: bool, search_ema: bool
) -> SweepPlan:
    """Optuna over p (and optionally the EMA rate, alpha). p and the EMA rate act only in
    distillation, so without alpha all trials branch from one burn-in; alpha changes burn-in,
    so searching it means full runs."""
    _check_positive("--burn-in", [burn_in])
    _check_positive("--distill", [distill])
    if trials < 1:
        raise PlanError(f"--trials: expected >= 1, got {trials}")
    naive = dict(naive_burn_in_epochs=trials * burn_in, naive_distill_epochs=trials * distill)
    searched = ["distill.p"] + (["distill.ema"] if search_ema else [])
    if search_alpha:
        searched.append("objectives.alpha")
        search = Stage(
            name="search",
            fixed={"schedule.burn_in_epochs": burn_in, "schedule.distill_epochs": distill},
            grid={},
            epochs_per_trial=burn_in + distill,
            num_samples=trials,
        )
        plan = SweepPlan("threshold_p", [search], **naive)
        plan.notes.append("alpha is searched: every trial trains its own burn-in (no reuse)")
    else:
        burn = Stage(
            name="burn_in",
            fixed={
                "schedule.burn_in_epochs": burn_in,
                "schedule.distill_epochs": 0,
                "schedule.keep_burn_in_epochs": [burn_in],
            },
            grid={},
            epochs_per_trial=burn_in,
        )
        search = Stage(
            name="search",
            fixed={
                "schedule.burn_in_epochs": burn_in,
                "schedule.distill_epochs": distill,
                "schedule.keep_burn_in_epochs": [],
                # ASHA's per-epoch quality signal (the loop's val/f1 on a few test clips)
                "run.val_every_epochs": 1,
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
    plan.notes.append(f"Optuna (TPE) over {searched}, {trials} trials, ASHA on val/f1")
    return plan


# ============================================================================================
# Early stopping and resources
# ============================================================================================


def asha_grace_period(cfg: Config) -> int:
    """ASHA's grace period in absolute epochs: past the end of burn-in plus a quarter of
    distillation (at least one epoch), so no trial is judged before distillation has acted.

    ``time_attr`` is the reported ``epoch`` (absolute, branches continue counting from their
    burn-in), so the same value holds for full runs and for branches.
    """
    burn_in = cfg.schedule.burn_in_epochs
    distill = cfg.schedule.distill_epochs
    grace = burn_in + max(1, distill // 4)
    return min(grace, burn_in + max(distill, 1))


def asha_max_t(cfg: Config) -> int:
    return cfg.schedule.burn_in_epochs + cfg.schedule.distill_epochs


@dataclass(frozen=True)
class TrialResources:
    """What one trial holds: the bundles of its placement group (only the trial's own process:
    Train workers and local-mode fits are placed outside it), and the total it stands for when
    sizing ``max_concurrent_trials`` (training plus Ray Data's 1-CPU tasks)."""

    bundles: list[dict[str, float]]
    total: dict[str, float]


def trial_resources(cfg: Config, cpus_per_trial: float = 2.0) -> TrialResources:
    """Resources of one trial so that its driver, its training and its data loading fit.

    ``run.num_workers >= 1``: the trial process is a Train driver (``DRIVER_CPUS``); Ray Train
    places the workers (1 CPU each, plus 1 GPU each with ``run.use_gpu``), and Ray Data's tasks
    need ``DATA_CPUS`` more.
    ``run.num_workers == 0``: Train's local mode runs in a task the trial starts; the trial stands
    for ``cpus_per_trial`` CPUs (fit + data tasks; default 2), plus 1 GPU with ``run.use_gpu``.
    Ray Data tasks cannot run inside a trial's placement group, so these totals are enforced by
    ``max_concurrent_trials``, not by reservations (ray-notes §A.3, "Tune interplay").
    """
    gpu = 1.0 if cfg.run.use_gpu else 0.0
    driver = [{"CPU": DRIVER_CPUS}]
    if cfg.run.num_workers == 0:
        if cpus_per_trial < 1:
            raise PlanError(f"--cpus-per-trial must be >= 1, got {cpus_per_trial}")
        return TrialResources(bundles=driver, total={"CPU": float(cpus_per_trial), "GPU": gpu})
    n = cfg.run.num_workers
    return TrialResources(
        bundles=driver, total={"CPU": DRIVER_CPUS + n * 1.0 + DATA_CPUS, "GPU": n * gpu}
    )


def max_concurrent_trials(cluster: dict[str, float], per_trial: dict[str, float]) -> int:
    """How many trials the cluster runs at once: GPUs / GPUs-per-trial when trials use GPUs,
    and never more than CPUs / CPUs-per-trial. Raises when one trial does not fit at all."""
    fits = []
    for res, need in per_trial.items():
        if need <= 0:
            continue
        have = float(cluster.get(res, 0.0))
        fits.append(math.floor(have / need + 1e-9))
    n = min(fits) if fits else 1
    if n < 1:
        raise PlanError(
            f"one trial needs {per_trial} but the cluster has "
            f"{ {k: cluster.get(k, 0) for k in per_trial} }: lower run.num_workers or "
            "--cpus-per-trial, or add nodes"
        )
    return n


def device_kind(cfg: Config) -> str:
    return "GPU" if cfg.run.use_gpu else "CPU"


def device_hours(
    epochs: float, seconds_per_epoch: float, per_trial: dict[str, float], kind: str
) -> float:
    """Epochs x measured seconds/epoch x the devices a trial holds, in hours."""
    return epochs * seconds_per_epoch * per_trial.get(kind, 0.0) / 3600.0
