"""The sweep's concurrency rule against a real multi-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a CPU head holding the trial drivers' resource and the memory
figure, two nodes with logical GPUs): CPUs, GPUs and head memory are read from the running
cluster (``RAY_ADDRESS``), the plan follows them, and a trial driver's bundle lands on the head.

It runs in a subprocess: the test session's own in-process Ray cannot join a second cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, contextlib, io
    import ray
    from ray.cluster_utils import Cluster

    GB = 10**9
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0, "resources": {"TRAIN_DRIVER_RESOURCE": 1},
            "memory": int(float(sys.argv[1]) * GB), "include_dashboard": False,
            "object_store_memory": 80 * 2**20,
        },
    )
    for name in ("gpu-a", "gpu-b"):
        cluster.add_node(num_cpus=1, num_gpus=8, resources={name: 1},
                         object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = cluster.address
    out = {}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        from diod_ray.config import load_preset
        from diod_ray.sweeps.cluster import from_ray
        from diod_ray.sweeps.resources import trial_resources

        shape = from_ray()
        out["shape"] = {"cpus": shape.cpus, "gpus": shape.gpus, "head": shape.head_memory_gb,
                        "driver_resource": shape.driver_resource}
        # where a trial driver's bundle lands: the head, the only node with the resource
        res = trial_resources(load_preset("tri-pd"), shape.driver_resource)
        driver = {k: v for k, v in res.driver.items() if k != "CPU"}
        where = ray.get(ray.remote(lambda: ray.get_runtime_context().get_node_id())
                        .options(num_cpus=0, resources=driver).remote())
        head = [n["NodeID"] for n in ray.nodes()
                if n["Resources"].get("TRAIN_DRIVER_RESOURCE")]
        out["driver_on_head"] = [where] == head
        # the plan of the paper's Table 4(c) grid (27 trials), from this cluster (RAY_ADDRESS)
        from diod_ray.sweeps.cli import base_config, describe, sweep_parser
        from diod_ray.sweeps.plan import alpha_burnin_plan

        plan = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0, 1, 2])
        out["summary"] = {}
        for extra in ([], ["--head-memory-gb", "2"]):
            args = sweep_parser("t", "t", "t").parse_args(
                ["--preset", "tri-pd", "--storage", sys.argv[2]] + extra)
            cfg, _ = base_config(args)
            out["summary"][" ".join(extra)] = describe(args, plan, cfg, None)["resources"]
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(out))
    """
)


def _plan(tmp_path: Path, head_gb: float) -> dict:
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(head_gb), str(tmp_path / "sweeps")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_concurrency_follows_a_three_node_cluster_and_drivers_land_on_the_head(tmp_path):
    out = _plan(tmp_path, head_gb=4.0)
    assert out["shape"] == {"cpus": 2.0, "gpus": 16.0, "head": 4.0, "driver_resource": True}
    assert out["driver_on_head"] is True
    r = out["summary"][""]
    # 16 GPUs / 8 per tri-pd trial = 2 at once (27 trials planned: never all of them); a 4 GB
    # head holds 3 (0.58 GB sweep driver + 3 x 1.13 GB), so the GPUs are the limit
    assert r["max_concurrent_trials"] == 2 and r["limited_by"].startswith("GPUs: 16")
    assert r["per_stage"] == {"burn_in": 2, "distill": 2}
    assert r["head_memory"]["available_gb"] == 4.0
    assert r["cluster"]["source"] == "the Ray cluster (resources up now)"
    # a 2 GB head holds one trial beside the sweep's driver: the head is the limit
    r = out["summary"]["--head-memory-gb 2"]
    assert r["max_concurrent_trials"] == 1 and r["limited_by"].startswith("head memory")
