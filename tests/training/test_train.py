"""Ray Train end to end: local mode through both phases, resume, branching, S3 storage, DDP, faults.

Runs use the default single Train worker (local mode keeps no checkpoints to resume from);
the longer multi-process ones are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from ray.train import TrainingFailedError

from diod_ray.checkpoint import STATE_FILE, load_state
from diod_ray.config import apply_overrides, load_preset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smoke_data(smoke_shards):
    """The session's smoke shards (tests/conftest.py)."""
    return smoke_shards


def smoke_cfg(data_uri: str, storage: str, name: str = "run", **overrides):
    base = {"data.uri": data_uri, "run.storage_path": storage, "run.name": name}
    base.update(overrides)
    return apply_overrides(load_preset("smoke"), base)


def ray_checkpoints(run_dir: str) -> list[str]:
    """Ray Train's checkpoint directories of a run (one layout for any run.num_workers), oldest
    first (Ray names them checkpoint_<timestamp>)."""
    root = Path(run_dir)
    return [str(p) for p in sorted(root.glob("checkpoint_*")) if (p / STATE_FILE).exists()]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_smoke_trains_both_phases_with_one_worker(smoke_run):
    cfg, summary = smoke_run.cfg, smoke_run.summary  # the session's run (tests/conftest.py)
    assert cfg.run.num_workers == 1  # the default: one Train worker, resumable
    for phase in ("burn_in", "final"):
        assert set(summary[phase]) >= {"fg_ari", "all_ari", "f1", "static_recall", "moving_recall"}
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    state = load_state(summary["checkpoint"])
    total = (
        cfg.schedule.burn_in_epochs + cfg.schedule.distill_epochs
    ) * cfg.schedule.steps_per_epoch
    assert state["step"] == total == summary["steps"] and state["phase"] == "distill"
    assert state["teacher"] is not None and state["optimizer"]["state"]
    assert 1 <= len(ray_checkpoints(str(run_dir))) <= cfg.run.num_to_keep
    # TensorBoard: an event file that TensorBoard's own reader parses, with losses and images
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in (
        "loss/total",
        "lr",
        "stats/candidates_kept",
        "stats/motion_kept_share",
        "perf/clips_per_s",
        "final/f1",
    ):
        assert tag in tags["scalars"], tag
    assert "slots" in tags["images"]


@pytest.mark.slow
def test_killed_mid_distillation_resumes_same_step_and_teacher(ray_session, smoke_data, tmp_path):
    """A run that dies in distillation and is started again with the same (storage_path, name)
    continues from its last checkpoint's step with that checkpoint's teacher, also with another
    run.num_workers (one checkpoint layout: Ray Train's)."""
    from diod_ray.train import run
    from diod_ray.training.state import TrainState

    # burn-in = steps 0-1, distillation = steps 2-5; checkpoints at epoch ends (2, 4); fault at 5
    cfg = smoke_cfg(
        smoke_data,
        str(tmp_path / "runs"),
        "resume",
        **{
            "schedule.distill_epochs": 2,
            "run.checkpoint_every_steps": 1,
            "run.fault_injection_step": 5,
            "run.evaluate_at_end": False,
        },
    )
    with pytest.raises(TrainingFailedError):  # the worker exits at step 5 (max_failures=0)
        run(cfg, progress=False)
    run_dir = str(tmp_path / "runs" / "resume")
    last = ray_checkpoints(run_dir)[-1]
    saved = load_state(last)
    assert saved["step"] == 4 and saved["phase"] == "distill" and saved["teacher"] is not None
    # the loop's restore path rebuilds exactly that teacher, step and optimiser state
    ts = TrainState(cfg, torch.device("cpu"))
    ts.load(saved)
    assert ts.step == 4 and ts.teacher is not None
    assert_same_tensors(ts.teacher.state_dict()["model"], saved["teacher"]["model"])
    assert_same_tensors(ts.student.state_dict(), saved["student"])

    # the same run name again, now with 2 workers: Ray hands them the same checkpoint
    more = apply_overrides(cfg, {"run.num_workers": 2, "run.cpus_per_worker": 0.5})
    summary = run(more, progress=False)
    assert summary["resumed_from_step"] == 4 and summary["steps"] == 6


def test_burn_in_is_kept_and_distillation_branches_from_it(ray_session, smoke_data, tmp_path):
    from diod_ray.train import run

    storage = str(tmp_path / "runs")
    burn = smoke_cfg(
        smoke_data,
        storage,
        "burn",
        **{
            "schedule.burn_in_epochs": 2,
            "schedule.distill_epochs": 0,
            "schedule.keep_burn_in_epochs": [1, 2],
            "run.evaluate_at_end": False,
        },
    )
    run(burn, progress=False)
    kept = Path(storage) / "burn" / "kept"
    assert sorted(p.name for p in kept.iterdir()) == ["burn_in_epoch_1", "burn_in_epoch_2"]
    k1 = load_state(kept / "burn_in_epoch_1")
    assert k1["step"] == 2 and k1["teacher"] is None

    branch = smoke_cfg(
        smoke_data,
        storage,
        "branch",
        **{
            "schedule.burn_in_epochs": 1,
            "schedule.distill_epochs": 1,
            "run.init_from": str(kept / "burn_in_epoch_1"),
        },
    )
    summary = run(branch, progress=False)
    assert summary["steps"] == 4
    assert "f1" in summary["burn_in"] and "f1" in summary["final"]

    # the ablations' control: the same branch spent on more burn-in, never creating a teacher
    control = smoke_cfg(
        smoke_data,
        storage,
        "control",
        **{
            "schedule.burn_in_epochs": 2,
            "schedule.distill_epochs": 0,
            "run.init_from": str(kept / "burn_in_epoch_1"),
        },
    )
    summary = run(control, progress=False)
    assert summary["steps"] == 4
    assert summary["burn_in"] == summary["final"] and "f1" in summary["final"]
    last = load_state(ray_checkpoints(os.path.join(storage, "control"))[-1])
    assert last["step"] == 4 and last["teacher"] is None


def test_an_s3_run_uploads_tensorboard_with_each_checkpoint_and_resumes_from_s3(
    ray_session, smoke_data, s3_server, s3_bucket, tmp_path
):
    """An s3:// run's event files are uploaded with every checkpoint, not only at the end: a run
    whose worker dies after its first checkpoint (no retries) leaves that attempt's scalars in
    the bucket, readable by TensorBoard. The same run started again resumes from its S3
    checkpoint and finishes; started once more, it resumes at its last step."""
    import boto3
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from diod_ray.train import run
    from diod_ray.training.driver import build_trainer

    cfg = smoke_cfg(
        smoke_data,
        f"s3://{s3_bucket}/runs",
        "s3run",
        **{
            "run.fault_injection_step": 3,
            "run.max_failures": 0,
            "run.evaluate_at_end": False,
            # the workers started before the server: they learn its endpoint from the config
            "storage.endpoint_url": s3_server,
        },
    )
    with pytest.raises(TrainingFailedError):
        build_trainer(cfg).fit()  # dies at step 3, after the step-2 checkpoint
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="runs/s3run/tensorboard/")
    events = [o["Key"] for o in listed["Contents"] if "tfevents" in o["Key"]]
    assert events, listed["Contents"]
    local = tmp_path / "tb"
    local.mkdir()
    for k in events:
        s3.download_file(s3_bucket, k, str(local / os.path.basename(k)))
    acc = EventAccumulator(str(local), size_guidance={"images": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss/total")]
    assert 2 in steps  # the burn-in epoch logged before the checkpoint the upload came with

    # the same (storage_path, name) again, without the fault: Ray Train resumes from S3
    cfg = apply_overrides(cfg, {"run.fault_injection_step": -1})
    first = run(cfg, progress=False)
    assert first["resumed_from_step"] == 2 and first["steps"] == 4
    assert first["checkpoint"].startswith(f"s3://{s3_bucket}/runs/s3run/checkpoint_")
    assert load_state(first["checkpoint"])["step"] == 4
    second = run(cfg, progress=False)
    assert second["resumed_from_step"] == 4


# ------------------------------------------------------------------------------------------
# multi-process: real worker actors (slow)
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_worker_ddp_keeps_replicas_identical(ray_session, smoke_data, tmp_path):
    """2 DDP workers (gloo) train both phases; at the end every weight agrees across ranks, and
    the evaluation split over the two ranks gives the numbers of one process evaluating all."""
    from diod_ray.data.streaming.batches import iter_eval_batches
    from diod_ray.data.streaming.datasets import eval_dataset
    from diod_ray.inference import evaluate_model
    from diod_ray.model import build_model
    from diod_ray.training.driver import build_trainer

    cfg = smoke_cfg(
        smoke_data,
        str(tmp_path / "runs"),
        "ddp",
        **{
            "run.num_workers": 2,
            "run.cpus_per_worker": 0.5,
            "data.batch_size": 2,
            "run.eval_batch_size": 1,  # 4 test clips -> 2 batches per rank
        },
    )
    result = build_trainer(cfg).fit()
    assert result.error is None
    assert result.metrics["step"] == 4
    assert result.metrics["ddp/max_param_diff"] == 0.0

    with result.checkpoint.as_directory() as d:
        state = load_state(d)
    model = build_model(cfg)
    model.load_state_dict(state["student"])
    batches = iter_eval_batches(eval_dataset(cfg, cfg.data.test_split), cfg, 1)
    alone = evaluate_model(model, batches, cfg, cfg.run.eval_protocol)
    assert alone["clips"] == result.metrics["final/clips"] == 4
    for k in ("fg_ari", "all_ari", "f1", "recall", "mbo"):
        assert result.metrics[f"final/{k}"] == pytest.approx(alone[k], abs=1e-9, nan_ok=True), k


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_job_submit_runs_the_smoke_preset(smoke_data, tmp_path):
    """`ray job submit -- python -m diod_ray.train` against a real local cluster (ray start)."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    # `ray start` records its address in /tmp/ray/ray_current_cluster and only `ray stop` removes
    # it; left behind, it sends every later auto-detecting Ray client on this machine (Train V2's
    # PlacementGroupCleaner among them) to a dead GCS (docs/sweeps.md): put back what was there
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    recorded_before = recorded.read_bytes() if recorded.exists() else None
    # `ray start --block` in its own process group: stopping it stops exactly this cluster
    # (`ray stop` would also kill the test session's in-process cluster, and with it pytest)
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=2",
            "--disable-usage-stats",
            # the session's cluster holds the default agent ports: give this one its own
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_dashboard(dash, head)
        for _attempt in range(10):  # the job agent registers a few seconds after the dashboard
            out = subprocess.run(
                [
                    ray_bin,
                    "job",
                    "submit",
                    f"--address=http://127.0.0.1:{dash}",
                    "--",
                    sys.executable,
                    "-m",
                    "diod_ray.train",
                    "--preset",
                    "smoke",
                    "--set",
                    f"data.uri={smoke_data}",
                    f"run.storage_path={tmp_path / 'runs'}",
                    "run.name=job",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
                cwd=REPO,
            )
            if "No available agent" not in out.stderr + out.stdout:
                break
            time.sleep(3)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        final = [line for line in out.stdout.splitlines() if line.startswith('{"run": "job"')]
        assert final, out.stdout[-3000:]
        summary = json.loads(final[-1])
        assert "f1" in summary["final"] and summary["steps"] == 4
        # what a person following the job sees: one line per epoch, no framework blocks
        console = out.stdout + out.stderr
        epoch_lines = [ln for ln in console.splitlines() if "[job] " in ln and " epoch " in ln]
        assert len(epoch_lines) == 2, epoch_lines  # smoke: 1 burn-in + 1 distillation epoch
        assert "burn-in epoch 1/2" in epoch_lines[0] and "distill epoch 2/2" in epoch_lines[1]
        for noise in (
            "Running Dataset",
            "logging_progress",
            "Reporting training result",
            "Checkpoint successfully created",
            "Execution plan of Dataset",
        ):
            assert noise not in console, noise
        assert len(console.encode()) < 24_000, console[-3000:]  # before: ~10 KB of it per epoch
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        if recorded_before is None:
            recorded.unlink(missing_ok=True)
        else:
            recorded.write_bytes(recorded_before)


def _wait_for_dashboard(port: int, head: subprocess.Popen, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start --head exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Ray dashboard on port {port} did not come up in {timeout_s} s")
