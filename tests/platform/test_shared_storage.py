"""Storage a multi-node cluster can share: the rule of the multi-node storage guard (a node-local
path is refused on more than one node unless declared shared), and the ``storage:`` section
reaching Tune's experiment state (moto S3 on 127.0.0.1). The guard firing on a real multi-node
Ray cluster is tested in test_multinode.py (one cluster for all the multi-node checks)."""

from __future__ import annotations

import os

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
