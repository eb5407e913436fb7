"""Storage a multi-node cluster can share: a node-local path is refused before anything runs on a
real multi-node Ray cluster (``ray.cluster_utils.Cluster`` on this machine) and accepted on one
node; the ``storage:`` section reaches Tune's experiment state (moto S3 on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import boto3
import pytest

from diod_ray.config import StorageConfig
from diod_ray.errors import StorageError
from diod_ray.training.shared_storage import require_shared


def test_the_rule_local_paths_are_refused_on_many_nodes_unless_declared_shared():
    require_shared("/tmp/runs", "run.storage_path", StorageConfig(), nodes=1)
    require_shared("s3://b/runs", "run.storage_path", StorageConfig(), nodes=3)
    require_shared("/nfs/runs", "run.storage_path", StorageConfig(shared_local=True), nodes=3)
    with pytest.raises(StorageError, match="run.storage_path is a node-local path") as info:
        require_shared("~/runs", "run.storage_path", StorageConfig(), nodes=2)
    assert "the Ray cluster has 2 nodes" in str(info.value)
    assert "storage.shared_local=true" in str(info.value)
    assert info.value.uri == os.path.expanduser("~/runs")


_CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.errors import StorageError
    from diod_ray.sweeps.store import tune_storage
    from diod_ray.training.shared_storage import check_run_storage

    local = sys.argv[1]

    def outcome(fn):
        try:
            fn()
            return "ok"
        except StorageError as exc:
            return str(exc)

    def cfg(**extra):
        return apply_overrides(load_preset("smoke"), {"run.storage_path": local, **extra})

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False,
                        "object_store_memory": 80 * 2**20},
    )
    ray.init(address=cluster.address, log_to_driver=False)
    out = {
        "one_node": outcome(lambda: check_run_storage(cfg())),
        "one_node_sweep": outcome(lambda: tune_storage(local + "/sweep")),
        "workers_beyond_the_node": outcome(
            lambda: check_run_storage(cfg(**{"run.num_workers": 3}))
        ),
    }
    cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    out.update(
        nodes=sum(n["Alive"] for n in ray.nodes()),
        two_nodes=outcome(lambda: check_run_storage(cfg())),
        two_nodes_sweep=outcome(lambda: tune_storage(local + "/sweep")),
        two_nodes_s3=outcome(lambda: check_run_storage(cfg(**{"run.storage_path": "s3://b/r"}))),
        two_nodes_shared=outcome(lambda: check_run_storage(cfg(**{"storage.shared_local": True}))),
    )
    print("RESULT " + json.dumps(out))
    ray.shutdown()
    cluster.shutdown()
    """
)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_node_local_storage_path_is_refused_on_a_real_multi_node_cluster(tmp_path):
    """Two raylets on this machine are two nodes to Ray: the guard fires with two, not with one
    (its own process: the session's Ray stays as it is)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-c", _CLUSTER_SCRIPT, str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=220,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["one_node"] == "ok" and out["one_node_sweep"] == "ok"
    assert "its 3 Train workers need 3 CPU" in out["workers_beyond_the_node"]
    assert out["nodes"] == 2
    assert out["two_nodes"].startswith(f"uri {tmp_path / 'runs'}: run.storage_path is a node-local")
    assert "the Ray cluster has 2 nodes" in out["two_nodes"]
    assert "the sweep's --storage is a node-local path" in out["two_nodes_sweep"]
    assert out["two_nodes_s3"] == "ok" and out["two_nodes_shared"] == "ok"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_storage_section_reaches_tunes_experiment_state(
    ray_session, s3_server, s3_bucket, monkeypatch
):
    """A sweep whose endpoint is given only by ``--set storage.endpoint_url`` (the environment of
    this driver points nowhere) writes Tune's experiment state to that endpoint."""
    from ray import tune

    from diod_ray.sweeps.store import sweep_settings, tune_storage

    meta = {"preset": "smoke", "overrides": {"storage.endpoint_url": s3_server}}
    settings = sweep_settings(meta)
    assert settings.endpoint_url == s3_server
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    path, fs = tune_storage(f"s3://{s3_bucket}/sweeps/s", settings)
    assert path == f"{s3_bucket}/sweeps/s"

    def trainable(config):
        tune.report({"score": config["x"]})

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(
            name="stage", storage_path=path, storage_filesystem=fs, verbose=0
        ),
    )
    grid = tuner.fit()
    assert sorted(r.metrics["score"] for r in grid) == [1, 2]
    keys = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(
        Bucket=s3_bucket, Prefix="sweeps/s/stage/"
    )["Contents"]
    names = {k["Key"].rsplit("/", 1)[-1] for k in keys}
    assert "tuner.pkl" in names, names
    assert any(n.startswith("experiment_state") for n in names), names
    assert tune.Tuner.can_restore(f"{path}/stage", storage_filesystem=fs)
