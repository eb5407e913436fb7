"""The cluster a sweep plans for: its CPUs, GPUs and head memory, from flags or from Ray.

Sources, first match wins: ``--cluster-resources`` (JSON, for a dry run of a cluster you are not
connected to); the cluster named by ``RAY_ADDRESS`` (``ray.cluster_resources()`` for CPUs and
GPUs, and the Ray ``memory`` resource of the node holding the trial drivers, i.e. the node with
:data:`~diod_ray.sweeps.resources.DRIVER_RESOURCE`, else the one this process runs on); else this
machine. ``--cluster-cpus``, ``--cluster-gpus`` and ``--head-memory-gb`` replace single figures of
any of them (an autoscaling cluster reports what is up now; the flag says what it can grow to).
"""

from __future__ import annotations

import json
import os
from typing import Any

from diod_ray.sweeps.errors import PlanError
from diod_ray.sweeps.resources import DRIVER_RESOURCE, ClusterShape

GB = 1e9


def this_machine() -> ClusterShape:
    """This machine's cores and physical memory; no GPUs counted (a sweep on one machine runs
    its trials' Train workers on CPUs, or one GPU trial at a time)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    return ClusterShape(float(os.cpu_count() or 1), 0.0, memory, False, "this machine")


def from_json(text: str) -> ClusterShape:
    """``--cluster-resources``: {"CPU": n, "GPU": n, "TRAIN_DRIVER_RESOURCE": n,
    "head_memory_gb": n} (missing numbers: 0; no head_memory_gb: not checked)."""
    try:
        shape = json.loads(text)
        if not isinstance(shape, dict):
            raise ValueError("not a JSON object")
        memory = shape.get("head_memory_gb")
        return ClusterShape(
            float(shape.get("CPU", 0)),
            float(shape.get("GPU", 0)),
            None if memory is None else float(memory),
            float(shape.get(DRIVER_RESOURCE, 0)) > 0,
            "--cluster-resources",
        )
    except (ValueError, TypeError) as exc:
        raise PlanError(f"--cluster-resources: {exc}: {text!r}") from None


def from_ray() -> ClusterShape:
    """The running cluster this process is connected to (what is up now)."""
    import ray

    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    holders = [n for n in nodes if n.get("Resources", {}).get(DRIVER_RESOURCE, 0) > 0]
    if not holders:  # no driver resource: the trial drivers run where Ray puts them, near us
        here = ray.get_runtime_context().get_node_id()
        holders = [n for n in nodes if n.get("NodeID") == here]
    memory = holders[0]["Resources"].get("memory") if holders else None
    return ClusterShape(
        float(total.get("CPU", 0)),
        float(total.get("GPU", 0)),
        None if memory is None else float(memory) / GB,
        float(total.get(DRIVER_RESOURCE, 0)) > 0,
        "the Ray cluster (resources up now)",
    )


def sweep_cluster(args: Any) -> ClusterShape:
    """The shape a sweep command plans for (see the module docstring)."""
    if args.cluster_resources is not None:
        shape = from_json(args.cluster_resources)
    elif os.environ.get("RAY_ADDRESS"):
        from diod_ray.training.driver import ensure_ray

        ensure_ray()
        shape = from_ray()
    else:
        shape = this_machine()
    flags = {
        "cpus": "--cluster-cpus",
        "gpus": "--cluster-gpus",
        "head_memory_gb": "--head-memory-gb",
    }
    given = {}
    for key, flag in flags.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is None:
            continue
        if value < 0:
            raise PlanError(f"{flag}: expected >= 0, got {value:g}")
        given[key] = float(value)
    if not given:
        return shape
    named = " ".join(flags[k] for k in given)
    return ClusterShape(**{**shape.__dict__, **given, "source": f"{shape.source} with {named}"})
