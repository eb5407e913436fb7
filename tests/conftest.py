"""Session-scoped fixtures: one local Ray per test session, one moto S3 server on 127.0.0.1."""

from __future__ import annotations

import os

# Before Ray is imported anywhere: keep everything on loopback, no auth token, fast health checks.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# The moto server's (dummy) credentials, in the environment before the session's Ray starts:
# filesystems carry no keys (issue 16), so every Ray process resolves them from its own
# environment through the AWS chain, as on a laptop whose shell exports them before Ray starts.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One in-process Ray cluster for the whole session (2 CPUs, small object store).

    Started after the S3 server, so every Ray process inherits its endpoint and credentials from
    the environment, as on a machine whose shell exports them before Ray starts (filesystems carry
    no keys, and a worker started earlier would look for the bucket on AWS)."""
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:
            ray.init(
                address="local",  # always a fresh cluster, never one left running on the box
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=512 * 2**20,
                log_to_driver=False,
            )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto's threaded server), for the whole session.

    Yields the endpoint URL; the AWS variables point every client (boto3, s3fs, pyarrow) at it.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_VARS}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
        }
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket on the session's moto server; yields its name."""
    import uuid

    import boto3

    name = f"diod-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def one_torch_thread():
    """Smoke-sized tensors: OpenMP barriers cost more than a second thread gives on 2 busy cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smoke_shards(tmp_path_factory):
    """The smoke preset's synthetic shards (train, test, val; real generator, real optical flow),
    generated once per session. Read-only: a test that rewrites a split makes its own."""
    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.data.synthetic.generate import ensure_synthetic

    uri = str(tmp_path_factory.mktemp("smoke-shards"))
    ensure_synthetic(apply_overrides(load_preset("smoke"), {"data.uri": uri}), progress=False)
    return uri


class SmokeRun:
    """The session's one run of the smoke preset through both phases (:func:`smoke_run`):
    its config, its summary (the final JSON line) and its run directory; :meth:`config` gives
    the same config under another run name, for a test that runs it again (same seed, fault)."""

    OVERRIDES = {
        # 2 burn-in epochs: a fault in burn-in (step 3) resumes from a checkpoint (step 2)
        "schedule.burn_in_epochs": 2,
        "schedule.distill_epochs": 1,
        "run.num_to_keep": 1,  # the kept end-of-burn-in checkpoint must survive it
    }

    def __init__(self, data_uri: str, storage: str) -> None:
        self.data_uri, self.storage = data_uri, storage
        self.cfg = self.config("smoke")
        self.summary: dict = {}

    def config(self, name: str, **overrides):
        from diod_ray.config import apply_overrides, load_preset

        sets = {"data.uri": self.data_uri, "run.storage_path": self.storage, "run.name": name}
        return apply_overrides(load_preset("smoke"), {**sets, **self.OVERRIDES, **overrides})

    @property
    def run_dir(self):
        from pathlib import Path

        return Path(self.summary["run_dir"])


@pytest.fixture(scope="session")
def smoke_run(ray_session, smoke_shards, tmp_path_factory) -> SmokeRun:
    """One Ray Train run of the smoke preset (1 worker, 2 + 1 epochs of 2 steps, images,
    validation at the switch), shared by every test that only reads a run's outputs: the
    summary, checkpoints, kept burn-in, TensorBoard, gates, and the reference of the
    determinism tests. A test that changes a setting runs its own."""
    from diod_ray.train import run

    shared = SmokeRun(smoke_shards, str(tmp_path_factory.mktemp("smoke-run")))
    # the data's premise is measured before training and joins the verdict (test_preconditions)
    shared.cfg = shared.config("smoke", **{"run.measure_premise": True})
    shared.summary = run(shared.cfg, progress=False)
    return shared
