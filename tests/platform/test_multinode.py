"""Proof without a cluster (issue 22.7): ONE multi-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``), started once for this module in a subprocess (the test session's
own in-process Ray cannot join a second cluster), and in it, in order:

1. the multi-node storage guard: a node-local path passes on one node and is refused on two and
   on three (``run.storage_path``, the sweep's ``--storage``, a sweep stage itself), while
   ``s3://`` and ``storage.shared_local=true`` pass;
2. the sweep's concurrency plan read from the running cluster (CPUs, GPUs, head memory,
   ``RAY_ADDRESS``), and a trial driver's bundle landing on the head;
3. one smoke sweep stage (the burn-in stage of an alpha-burnin sweep: 1 trial, 1 epoch of 2
   steps, no evaluation) whose Train run has 2 workers, with ``storage.shared_local=true`` (all
   "nodes" share this machine's disk); where its actors ran is read from Ray's public state API
   (``ray.util.state.list_actors``) before the cluster shuts down.

The cluster, all on logical resources (2 real cores underneath):

- head: 1 CPU (Ray Data's read tasks run here), ``TRAIN_DRIVER_RESOURCE`` (the trial drivers'
  resource of the shipped cluster configs), a 4 GB ``memory`` resource (the head memory the plan
  checks) and the dashboard (the state API needs it);
- node-a, node-b: 2 CPUs and 8 logical GPUs each (GPUs only for the plan of part 2; CUDA does
  not run here, so the smoke trial trains on CPUs).

The trial's Train workers ask for 1.5 CPUs each: the head (1 CPU) cannot take one and a 2-CPU node
cannot take two, so Ray Train's placement group (PACK) has one way to place them, one worker per
non-head node, and the head keeps a CPU for Ray Data. (With 1-CPU workers on 1-CPU nodes no CPU
would be left for Ray Data anywhere off the head, and with a CPU on the head PACK may put a
worker there.)

Cost: one cluster start-up (3 raylets + dashboard) plus one 2-worker Tune trial (figures in the
fixture's comment). It replaces two tests that each started their own cluster
(test_multinode_sweep_plan.py and the cluster part of test_shared_storage.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.errors import StorageError
    from diod_ray.sweeps.store import tune_storage
    from diod_ray.training.shared_storage import check_run_storage

    data_uri, work = sys.argv[1], sys.argv[2]
    local = work + "/runs"
    GB, MiB = 10**9, 2**20
    out = {"seconds": {}}
    t0 = time.time()

    def mark(phase):
        out["seconds"][phase] = round(time.time() - t0, 1)

    def outcome(fn):
        try:
            fn()
            return "ok"
        except StorageError as exc:
            return str(exc)

    def cfg(**extra):
        return apply_overrides(load_preset("smoke"), {"run.storage_path": local, **extra})

    def guard(prefix):
        out[prefix] = outcome(lambda: check_run_storage(cfg()))
        out[prefix + "_sweep"] = outcome(lambda: tune_storage(local + "/sweep"))

    def add(name):
        cluster.add_node(num_cpus=2, num_gpus=8, resources={name: 1},
                         object_store_memory=80 * MiB)
        cluster.wait_for_nodes()

    with socket.socket() as s:  # a free port: 8265 may be another cluster's dashboard
        s.bind(("127.0.0.1", 0))
        dashboard_port = s.getsockname()[1]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1, "resources": {"TRAIN_DRIVER_RESOURCE": 1}, "memory": 4 * GB,
            "include_dashboard": True, "dashboard_port": dashboard_port,
            "object_store_memory": 80 * MiB,
        },
    )
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        mark("head up")

        # ---- 1. the storage guard: one node, then two, then three --------------------------
        guard("one_node")
        out["workers_beyond_the_node"] = outcome(
            lambda: check_run_storage(cfg(**{"run.num_workers": 3})))
        add("node-a")
        out["nodes_at_two"] = sum(n["Alive"] for n in ray.nodes())
        guard("two_nodes")
        out["two_nodes_s3"] = outcome(
            lambda: check_run_storage(cfg(**{"run.storage_path": "s3://b/r"})))
        out["two_nodes_shared"] = outcome(
            lambda: check_run_storage(cfg(**{"storage.shared_local": True})))
        add("node-b")
        mark("three nodes up")
        nodes = [n for n in ray.nodes() if n["Alive"]]
        names = {}
        for n in nodes:
            res = n["Resources"]
            names[n["NodeID"]] = ("head" if res.get("TRAIN_DRIVER_RESOURCE") else
                                  "node-a" if res.get("node-a") else "node-b")
        out["nodes"] = sorted(names.values())
        guard("three_nodes")

        # ---- 2. the plan, from this cluster (RAY_ADDRESS) ----------------------------------
        from diod_ray.sweeps.cli import base_config, describe, sweep_parser
        from diod_ray.sweeps.cluster import from_ray
        from diod_ray.sweeps.plan import alpha_burnin_plan
        from diod_ray.sweeps.resources import trial_resources

        shape = from_ray()
        out["shape"] = {"cpus": shape.cpus, "gpus": shape.gpus, "head": shape.head_memory_gb,
                        "driver_resource": shape.driver_resource}
        # where a trial driver's bundle lands: the head, the only node with the resource
        res = trial_resources(load_preset("tri-pd"), shape.driver_resource)
        driver = {k: v for k, v in res.driver.items() if k != "CPU"}
        where = ray.get(ray.remote(lambda: ray.get_runtime_context().get_node_id())
                        .options(num_cpus=0, resources=driver).remote())
        out["driver_bundle_node"] = names[where]
        # the plan of the paper's Table 4(c) grid (27 trials)
        plan = alpha_burnin_plan([0.2, 0.3, 0.4], [200, 300, 400], 500, [0, 1, 2])
        out["summary"] = {}
        for extra in ([], ["--head-memory-gb", "2"]):
            args = sweep_parser("t", "t", "t").parse_args(
                ["--preset", "tri-pd", "--storage", work + "/plan"] + extra)
            c, _ = base_config(args)
            out["summary"][" ".join(extra)] = describe(args, plan, c, None)["resources"]
        mark("plan")

        # ---- 3. one smoke sweep stage, its 2 Train workers across the nodes ----------------
        from diod_ray.sweeps.driver import run_stage

        sets = [f"data.uri={data_uri}", "run.num_workers=2", "run.cpus_per_worker=1.5",
                "run.evaluate_at_end=false", "storage.shared_local=true"]
        args = sweep_parser("t", "t", "mn").parse_args(
            ["--preset", "smoke", "--storage", work + "/sweeps", "--name", "mn"]
            + [x for s in sets for x in ("--set", s)])
        c, overrides = base_config(args)
        plan = alpha_burnin_plan([0.3], [1], 1, [0])
        stage = plan.stages[0]  # burn_in: 1 trial of 1 epoch
        summary = describe(args, plan, c, None)["resources"]
        out["smoke_resources"] = {"per_trial": summary["per_trial"],
                                  "per_stage": summary["per_stage"]}
        root = work + "/sweeps/mn"
        meta = {"kind": plan.kind, "name": "mn", "preset": "smoke", "config_file": None,
                "overrides": overrides, "runs": root + "/runs", "stage": stage.name,
                "variants": stage.variants}
        stage_args = dict(root=root, res=trial_resources(c, shape.driver_resource),
                          max_concurrent=summary["per_stage"][stage.name])
        # the stage itself refuses a node-local --storage not declared shared, before Tune
        unshared = {k: v for k, v in overrides.items() if k != "storage.shared_local"}
        out["stage_unshared"] = outcome(
            lambda: run_stage(stage, sweep={**meta, "overrides": unshared}, **stage_args))
        data = run_stage(stage, sweep=meta, **stage_args)
        mark("sweep stage")
        out["stage"] = {
            "complete": data["complete"],
            "trials": [{k: t[k] for k in ("status", "error", "train_run", "epochs_trained")}
                       | {"epoch": t["metrics"].get("epoch"), "step": t["metrics"].get("step")}
                       for t in data["trials"]],
        }
        # where the stage's actors ran (dead actors stay in the state API's table)
        out["actors"] = sorted(
            [a.class_name, names.get(a.node_id, a.node_id), a.state]
            for a in list_actors(limit=10000, raise_on_missing_output=False)
        )
        mark("actors listed")
    finally:
        ray.shutdown()
        cluster.shutdown()
    mark("cluster down")
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, smoke_shards) -> dict:
    """Runs SCRIPT once; its RESULT line as a dict (and the script's console, for messages).

    What it costs (``pytest tests/platform/test_multinode.py --durations=3``, 2 cores shared with
    other Ray runs, load average 15-60): 68 s, 120 s and 143 s. The script's phase clock
    (``out["seconds"]``, kept in <work>/result.json beside its console.txt) of the 68 s run:
    head up 14 s, two more nodes 5 s, plan 1.5 s, the sweep stage 39 s, shut-down 2 s. The two
    tests it replaced took 43 s + 42 s in the window of the 120 s run."""
    work = tmp_path_factory.mktemp("multinode")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, smoke_shards, str(work)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    (work / "console.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    (work / "result.json").write_text(json.dumps(out, indent=1))  # to read after a failure
    out["work"] = str(work)
    return out


def test_the_cluster_has_a_head_and_two_worker_nodes(cluster_run):
    assert cluster_run["nodes"] == ["head", "node-a", "node-b"]
    assert cluster_run["nodes_at_two"] == 2


def test_a_node_local_storage_path_passes_on_one_node(cluster_run):
    out = cluster_run
    assert out["one_node"] == "ok" and out["one_node_sweep"] == "ok"
    # one node, but its Train workers cannot all fit on it: they will run on other nodes
    assert "its 3 Train workers need 3 CPU" in out["workers_beyond_the_node"]


@pytest.mark.parametrize("prefix,count", [("two_nodes", 2), ("three_nodes", 3)])
def test_a_node_local_storage_path_is_refused_on_several_nodes(cluster_run, prefix, count):
    """Raylets on this machine are nodes to Ray: the guard fires with two and with three."""
    runs = Path(cluster_run["work"]) / "runs"
    assert cluster_run[prefix].startswith(f"uri {runs}: run.storage_path is a node-local")
    assert f"the Ray cluster has {count} nodes" in cluster_run[prefix]
    assert "the sweep's --storage is a node-local path" in cluster_run[prefix + "_sweep"]
    assert f"the Ray cluster has {count} nodes" in cluster_run[prefix + "_sweep"]


def test_object_storage_and_a_declared_shared_path_pass_on_several_nodes(cluster_run):
    assert cluster_run["two_nodes_s3"] == "ok" and cluster_run["two_nodes_shared"] == "ok"


def test_a_sweep_stage_refuses_an_undeclared_node_local_storage_before_it_starts(cluster_run):
    out = cluster_run["stage_unshared"]
    assert "the sweep's --storage is a node-local path" in out
    assert "the Ray cluster has 3 nodes" in out and "storage.shared_local=true" in out


def test_concurrency_follows_the_cluster_and_drivers_land_on_the_head(cluster_run):
    out = cluster_run
    assert out["shape"] == {"cpus": 5.0, "gpus": 16.0, "head": 4.0, "driver_resource": True}
    assert out["driver_bundle_node"] == "head"
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


def test_the_smoke_sweep_stage_trains_to_the_end(cluster_run):
    res = cluster_run["smoke_resources"]
    assert res["per_trial"]["driver"] == {"CPU": 0.0, "TRAIN_DRIVER_RESOURCE": 0.01}
    assert res["per_trial"]["workers"] == [{"CPU": 1.5}, {"CPU": 1.5}]
    # 5 CPUs / (2 x 1.5 + 1 for Ray Data) per trial: one at a time
    assert res["per_stage"] == {"burn_in": 1, "distill": 1}
    stage = cluster_run["stage"]
    assert stage["complete"], stage
    (trial,) = stage["trials"]
    assert trial["status"] == "TERMINATED" and trial["error"] is None
    assert trial["epoch"] == 1 and trial["step"] == 2 and trial["epochs_trained"] == 1
    # rank 0 kept the burn-in checkpoint the distillation branches would start from
    kept = Path(trial["train_run"]) / "kept" / "burn_in_epoch_1" / "state.pt"
    assert kept.is_file()


def test_the_train_workers_ran_on_the_two_worker_nodes_and_the_drivers_on_the_head(cluster_run):
    actors = cluster_run["actors"]
    workers = sorted(node for cls, node, _ in actors if cls == "RayTrainWorker")
    assert workers == ["node-a", "node-b"], actors
    controllers = [node for cls, node, _ in actors if cls == "TrainController"]
    assert controllers == ["head"], actors
    # the Tune trial, i.e. the Train driver (Tune runs a function trainable as an ImplicitFunc
    # actor), in the driver's bundle
    trial = [node for cls, node, _ in actors if cls == "ImplicitFunc"]
    assert trial == ["head"], actors
