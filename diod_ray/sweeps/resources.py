"""What a sweep trial asks Ray for, and how many trials run at once (docs/sweeps.md, "How a
sweep maps onto a cluster"). Plain data, no Ray.

Concurrency comes from the resource that limits it, never from the number of trials: the
cluster's GPUs (CPUs for a CPU preset) over one trial's, the memory of the node that holds the
trial drivers (the head on the shipped cluster configs), and, for a searched (Optuna) stage, a
cap that leaves most proposals to be made after results came back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from diod_ray.config import Config
from diod_ray.sweeps.errors import PlanError

# ============================================================================================
# Resources: what a trial asks Ray for (docs/sweeps.md, "How a sweep maps onto a cluster")
# ============================================================================================

# the head-node resource cluster/aws-gpu.yaml and cluster/kuberay/*.yaml define for Tune trial
# drivers, so drivers stay on the (on-demand) head node instead of (spot) GPU nodes
DRIVER_RESOURCE = "TRAIN_DRIVER_RESOURCE"
DRIVER_RESOURCE_SHARE = 0.01
# where no node has it (a laptop, the test cluster) a driver holds no CPU, only a little memory:
# a CPU share would keep the Ray Data tasks (1 CPU each) of a 2-core machine from ever running
DRIVER_MEMORY = 256 * 2**20
# CPUs per trial for its Ray Data read/decode tasks (not reserved: Ray Data runs them on free CPUs)
DATA_CPUS = 1.0

# Memory one running trial holds on the node of the trial drivers (the head), in GB, as PSS
# (proportional set size: shared library pages split between the processes mapping them, which is
# what the node's memory, or a pod's limit, pays for them; RSS counts torch's libraries again in
# every process: 0.96 GB each). `python benchmarks/sweep_head_memory.py` on Ray 2.60 / torch 2.14
# (2-core CPU box, 2026-12-06): {"trial_driver": {"rss_gb": 0.957, "pss_gb": 0.579},
# "train_controller": {"rss_gb": 0.958, "pss_gb": 0.546}}.
# - its Tune trial driver, a Ray actor that imports the project (ray.tune, ray.train, ray.data,
#   torch, diod_ray) to build the run's TorchTrainer;
TRIAL_DRIVER_MEMORY_GB = 0.58
# - the Train V2 controller actor every TorchTrainer.fit() starts on its driver's node (Ray 2.60
#   pins it there: ray/train/v2/api/data_parallel_trainer.py, label selector on the driver's
#   node id), measured while a one-worker fit runs.
TRAIN_CONTROLLER_MEMORY_GB = 0.55
HEAD_MEMORY_PER_TRIAL_GB = TRIAL_DRIVER_MEMORY_GB + TRAIN_CONTROLLER_MEMORY_GB
# the sweep's own driver (the `ray job submit` entrypoint running Tune) imports the project too
SWEEP_DRIVER_MEMORY_GB = TRIAL_DRIVER_MEMORY_GB
# A searched (Optuna) stage runs at most this share of its trials at once: TPE proposes from the
# results it has, so with every trial in flight at the start it proposes them all blind (random
# search at the price of TPE); with a quarter in flight, three quarters of the proposals see
# results. At least one trial always runs.
SEARCH_CONCURRENCY_SHARE = 4


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for: ``driver`` (the Tune trial's bundle, the Train driver),
    ``workers`` (one bundle per Train worker, reserved by Ray Train's placement group), and the
    ``total`` it stands for when sizing concurrency (drivers + workers + Ray Data's CPUs)."""

    driver: dict[str, float]
    workers: list[dict[str, float]]
    total: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "workers": self.workers, "total": self.total}


def train_workers(cfg: Config) -> int:
    """Train workers of a sweep trial: ``run.num_workers``, at least 1 (local mode is a
    unit-test tool; a trial's training always holds real resources)."""
    return max(1, cfg.run.num_workers)


def trial_resources(cfg: Config, driver_resource: bool) -> TrialResources:
    """``driver_resource``: the cluster defines :data:`DRIVER_RESOURCE` (on its head node)."""
    if driver_resource:
        driver = {"CPU": 0.0, DRIVER_RESOURCE: DRIVER_RESOURCE_SHARE}
    else:
        driver = {"CPU": 0.0, "memory": float(DRIVER_MEMORY)}
    worker = {"CPU": float(cfg.run.cpus_per_worker)}
    if cfg.run.use_gpu:
        worker["GPU"] = 1.0
    n = train_workers(cfg)
    total = {"CPU": n * worker["CPU"] + DATA_CPUS, "GPU": n * worker.get("GPU", 0.0)}
    return TrialResources(driver=driver, workers=[dict(worker) for _ in range(n)], total=total)


def device_kind(cfg: Config) -> str:
    return "GPU" if cfg.run.use_gpu else "CPU"


def device_hours(
    epochs: float, seconds_per_epoch: float, per_trial: dict[str, float], kind: str
) -> float:
    """Epochs x measured seconds/epoch x the devices a trial holds, in hours."""
    return epochs * seconds_per_epoch * per_trial.get(kind, 0.0) / 3600.0


# ============================================================================================
# Concurrency: trials at once, from the resource that limits it
# ============================================================================================


@dataclass(frozen=True)
class ClusterShape:
    """What the plan may assume: the cluster's CPUs and GPUs (``--cluster-cpus`` /
    ``--cluster-gpus`` / ``--cluster-resources``, or what Ray reports), the memory in GB of the
    node that holds the trial drivers (``--head-memory-gb``, or that node's Ray ``memory``
    resource; None: unknown, not checked), whether the cluster defines :data:`DRIVER_RESOURCE`,
    and where the figures came from."""

    cpus: float
    gpus: float
    head_memory_gb: float | None
    driver_resource: bool
    source: str

    def devices(self, kind: str) -> float:
        return self.gpus if kind == "GPU" else self.cpus


@dataclass(frozen=True)
class Concurrency:
    """Trials at once for the sweep (``trials``) and for each stage (``per_stage``), what
    limited it, and the head memory that many trials need."""

    trials: int
    per_stage: dict[str, int]
    limited_by: str
    head_memory_needed_gb: float
    head_memory_gb: float | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_concurrent_trials": self.trials,
            "per_stage": self.per_stage,
            "limited_by": self.limited_by,
            "head_memory": {
                "needed_gb": round(self.head_memory_needed_gb, 2),
                "available_gb": None
                if self.head_memory_gb is None
                else round(self.head_memory_gb, 2),
                "per_trial_gb": round(HEAD_MEMORY_PER_TRIAL_GB, 2),
                "sweep_driver_gb": round(SWEEP_DRIVER_MEMORY_GB, 2),
            },
            "notes": self.notes,
        }


def head_memory_needed_gb(trials: int) -> float:
    """GB on the trial drivers' node for ``trials`` running trials plus the sweep's driver."""
    return SWEEP_DRIVER_MEMORY_GB + trials * HEAD_MEMORY_PER_TRIAL_GB


def trials_the_head_holds(head_memory_gb: float) -> int:
    return max(0, math.floor((head_memory_gb - SWEEP_DRIVER_MEMORY_GB) / HEAD_MEMORY_PER_TRIAL_GB))


def search_cap(num_trials: int) -> int:
    """Trials at once in a searched stage (see :data:`SEARCH_CONCURRENCY_SHARE`)."""
    return max(1, num_trials // SEARCH_CONCURRENCY_SHARE)


def _per_stage(plan: Any, trials: int) -> dict[str, int]:
    """Each stage runs at most its own trials, a searched stage at most :func:`search_cap`."""
    out = {}
    for s in plan.stages:
        n = min(trials, s.num_trials)
        if s.num_samples:  # a searched stage: results must inform the proposals
            n = min(n, search_cap(s.num_trials))
        out[s.name] = max(1, n)
    return out


def planned_concurrency(
    plan: Any, res: TrialResources, kind: str, shape: ClusterShape, cap: int = 0
) -> Concurrency:
    """Trials at once: the cluster's ``kind`` devices (GPU, or CPU for a CPU preset) over one
    trial's (``res.total``), at least 1 (with none up, the first trial waits for the
    autoscaler), bounded by what the head's memory holds; ``cap`` (``--max-concurrent``)
    replaces the device rule but not the memory check: a cap the head cannot hold is refused.
    Each stage runs at most its own trials, a searched stage at most :func:`search_cap`."""
    if cap < 0:
        raise PlanError(f"--max-concurrent must be >= 1, got {cap}")
    need = res.total.get(kind, 0.0)
    have = shape.devices(kind)
    notes: list[str] = []
    if cap:
        trials, limited_by = cap, "--max-concurrent"
    else:
        by_devices = math.floor(have / need + 1e-9) if need > 0 else 1
        trials, limited_by = max(1, by_devices), f"{kind}s: {have:g} / {need:g} per trial"
        if by_devices < 1:
            notes.append(
                f"one trial needs {need:g} {kind}s and {shape.source} has {have:g}: one trial "
                f"at a time, waiting for the autoscaler; pass --cluster-{kind.lower()}s with "
                "what the cluster can scale to for more"
            )
    per_stage = _per_stage(plan, trials)
    running = max(per_stage.values())  # the most trials any stage runs at once
    if shape.head_memory_gb is not None:
        holds = trials_the_head_holds(shape.head_memory_gb)
        if holds < running:
            what = (
                f"{running} trial(s) at once need {head_memory_needed_gb(running):.1f} GB on the "
                f"head ({running} x {HEAD_MEMORY_PER_TRIAL_GB:.2f} GB per trial driver and "
                f"Train controller + {SWEEP_DRIVER_MEMORY_GB:.2f} GB for the sweep's driver), "
                f"it has {shape.head_memory_gb:.1f} GB"
            )
            if cap or holds < 1:
                fix = f"--max-concurrent {holds}" if holds >= 1 else "a head with more memory"
                raise PlanError(f"{what}: use {fix} (or --head-memory-gb if that figure is wrong)")
            notes.append(f"{what}: {holds} at once")
            trials, limited_by = holds, f"head memory: {shape.head_memory_gb:.1f} GB"
            per_stage = _per_stage(plan, trials)
    return Concurrency(
        trials=trials,
        per_stage=per_stage,
        limited_by=limited_by,
        head_memory_needed_gb=head_memory_needed_gb(max(per_stage.values())),
        head_memory_gb=shape.head_memory_gb,
        notes=notes,
    )
