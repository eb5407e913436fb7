"""What a run keeps in storage, on a local path and on a real S3 endpoint (moto on 127.0.0.1):
TensorBoard event files uploaded once each (bytes linear in the syncs, not quadratic) and still
read whole by TensorBoard; kept burn-in checkpoints published under a marker and never read
half-written by a branch's ``run.init_from``."""

from __future__ import annotations

import os

import boto3
import pytest
import torch

from diod_ray import storage
from diod_ray.config import apply_overrides, load_preset
from diod_ray.errors import StorageError


def _cfg(storage_path: str, name: str, **extra):
    return apply_overrides(
        load_preset("smoke"), {"run.storage_path": storage_path, "run.name": name, **extra}
    )


# ------------------------------------------------------------------------------------------
# TensorBoard: each closed event file uploaded once
# ------------------------------------------------------------------------------------------


def _bucket_objects(s3_server: str, bucket: str, prefix: str) -> dict[str, int]:
    s3 = boto3.client("s3", endpoint_url=s3_server)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listed if not o["Key"].endswith("/")}


def test_tensorboard_uploads_each_event_byte_once_and_tensorboard_reads_them_all(
    s3_server, s3_bucket, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from diod_ray.training.tensorboard import EventFiles

    cfg = _cfg(f"s3://{s3_bucket}/runs", "tb")
    uri = storage.join(storage.run_uri(cfg), "tensorboard")
    files = EventFiles(uri, cfg)
    syncs, per_sync, steps_per_sync = 12, [], 20
    step = 0
    for _ in range(syncs):
        for _ in range(steps_per_sync):
            files.writer.add_scalar("loss/total", 1.0 / (step + 1), step)
            files.writer.add_scalar("lr", 1e-4, step)
            step += 1
        per_sync.append(files.sync())
    files.close()
    per_sync.append(files.sync())  # the last file, closed by close()
    objects = _bucket_objects(s3_server, s3_bucket, "runs/tb/tensorboard/")
    # every byte uploaded went to a distinct object, once: the total is what the bucket holds
    assert files.bytes_uploaded == sum(per_sync) == sum(objects.values())
    assert len(objects) == syncs + 1
    # linear: every sync of the same logging uploads about the same bytes, the 12th no more than
    # the 1st (re-uploading the whole directory, as before, made sync k send k times as much)
    assert max(per_sync[:syncs]) <= 1.2 * min(per_sync[:syncs]), per_sync
    assert files.bytes_uploaded < 1.2 * syncs * per_sync[0]
    assert not os.path.exists(files.dir)  # the staging directory is gone after the last sync
    # a real TensorBoard reads every scalar from the uploaded files
    local = tmp_path / "tb"
    local.mkdir()
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in objects:
        s3.download_file(s3_bucket, key, str(local / os.path.basename(key)))
    acc = EventAccumulator(str(local))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/total")] == list(range(syncs * steps_per_sync))
    assert len(acc.Scalars("lr")) == syncs * steps_per_sync


def test_a_local_run_writes_tensorboard_in_place(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from diod_ray.training.tensorboard import EventFiles

    cfg = _cfg(str(tmp_path / "runs"), "tb-local")
    files = EventFiles(storage.join(storage.run_uri(cfg), "tensorboard"), cfg)
    for step in range(5):
        files.writer.add_scalar("x", float(step), step)
        assert files.sync() == 0  # nothing to upload: the files are already in the run
    files.close()
    acc = EventAccumulator(str(tmp_path / "runs" / "tb-local" / "tensorboard"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("x")] == [0.0, 1.0, 2.0, 3.0, 4.0]


# ------------------------------------------------------------------------------------------
# Kept burn-in checkpoints: published under a marker, read only once complete
# ------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def runs_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    return f"s3://{request.getfixturevalue('s3_bucket')}/runs"


def test_a_branch_never_starts_from_a_half_written_kept_checkpoint(runs_root, tmp_path):
    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.published import COMPLETE_MARKER
    from diod_ray.training.state import (
        TrainState,
        burn_in_end_uri,
        is_kept,
        keep_burn_in_checkpoint,
        read_init_state,
    )

    burn = _cfg(runs_root, "burn")
    ts = TrainState(burn, torch.device("cpu"))
    ts.step = 12
    kept = burn_in_end_uri(burn)
    assert is_kept(kept) and not is_kept(f"{runs_root}/burn/checkpoint_000001")
    branch = _cfg(runs_root, "branch", **{"run.init_from": kept})

    # half-written: the checkpoint's files are there (a copy that died), the marker is not
    half = tmp_path / "half"
    save_checkpoint(half, ts.to_state())
    storage.upload_directory(str(half), kept)
    with pytest.raises(StorageError, match="not published") as info:
        read_init_state(branch, timeout_s=0.5)
    assert info.value.uri == kept

    # published by the run: the marker, written last, carries the step; the branch reads it
    assert keep_burn_in_checkpoint(ts, "end") == kept
    marker = storage.read_json(storage.join(kept, COMPLETE_MARKER))
    assert marker["step"] == 12 and set(marker["files"]) == {"state.pt", "config.yaml"}
    state = read_init_state(branch, timeout_s=0.5)
    assert state["step"] == 12
    fresh = TrainState(branch, torch.device("cpu"))
    fresh.load(state, weights_only=True)
    for a, b in zip(fresh.student.state_dict().values(), ts.student.state_dict().values()):
        assert torch.equal(a, b)

    # a checkpoint that is not a kept one (a Train checkpoint, another run's) loads as it is
    other = f"{runs_root}/burn/checkpoint_000001"
    storage.upload_directory(str(half), other)
    plain = _cfg(runs_root, "branch2", **{"run.init_from": other})
    assert read_init_state(plain, timeout_s=0.1)["step"] == 12
