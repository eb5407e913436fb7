"""What a sweep trial asks Ray for, and how many trials run at once (docs/sweeps.md, "How a
sweep maps onto a cluster"). Plain data, no Ray."""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def planned_concurrency(plan: Any, res: TrialResources, cap: int, local_cpus: float | None) -> int:
    """Trials at once: ``--max-concurrent`` when given; else, on a cluster (``local_cpus`` None),
    every trial of the largest stage (Ray holds the rest pending until the autoscaler adds nodes:
    what is up right now does not matter); on this machine, its CPUs over a trial's CPUs."""
    if cap:
        if cap < 1:
            raise PlanError(f"--max-concurrent must be >= 1, got {cap}")
        return cap
    if local_cpus is None:
        return max(s.num_trials for s in plan.stages)
    return max(1, math.floor(local_cpus / res.total["CPU"] + 1e-9))


def device_kind(cfg: Config) -> str:
    return "GPU" if cfg.run.use_gpu else "CPU"


def device_hours(
    epochs: float, seconds_per_epoch: float, per_trial: dict[str, float], kind: str
) -> float:
    """Epochs x measured seconds/epoch x the devices a trial holds, in hours."""
    return epochs * seconds_per_epoch * per_trial.get(kind, 0.0) / 3600.0
