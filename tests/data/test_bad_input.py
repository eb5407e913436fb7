"""Bad input gets one clear DataError naming the URI, file, row and what was expected."""

from __future__ import annotations

import json
import socket

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_shards import make_clip

from diod_ray.config import StorageConfig, load_config
from diod_ray.data.conversion.convert import convert
from diod_ray.data.errors import DataError, ShardFormatError, SourceError, StorageError
from diod_ray.data.shards import store
from diod_ray.data.shards.rows import SCHEMA, Clip, encode_clip
from diod_ray.data.streaming.datasets import _check_parts


def _split(tmp_path, n=4, per_file=2) -> tuple[str, str]:
    uri = str(tmp_path / "ds")
    store.write_split(uri, "test", [make_clip(i) for i in range(n)], clips_per_file=per_file)
    return uri, f"{uri}/test/part-00001.parquet"


def test_truncated_shard(tmp_path):
    uri, part = _split(tmp_path)
    data = open(part, "rb").read()
    open(part, "wb").write(data[: len(data) // 2])
    problems = store.validate(uri)
    assert len(problems) == 2  # the file, and the clip count that no longer adds up
    assert part in problems[0] and "Parquet" in problems[0]
    with pytest.raises(ShardFormatError, match="not a readable Parquet file") as info:
        list(store.iter_clips(uri, "test"))
    assert info.value.file == part and info.value.uri == uri
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    with pytest.raises(ShardFormatError) as info:
        _check_parts(cfg, "test")  # the Ray pipeline checks every footer before reading
    assert info.value.file == part


def test_schema_of_another_version(tmp_path):
    uri, part = _split(tmp_path)
    table = pq.read_table(part)
    old = table.replace_schema_metadata({b"diod_ray.schema_version": b"0"})
    pq.write_table(old, part)
    with pytest.raises(ShardFormatError, match="schema version 0") as info:
        list(store.iter_clips(uri, "test"))
    assert info.value.file == part and "version 1" in str(info.value)
    foreign = pa.table({"x": [1, 2]})
    pq.write_table(foreign, part)
    problems = store.validate(uri)
    assert any(part in p and "no diod_ray schema version" in p for p in problems)


def test_frames_and_masks_of_different_shapes(tmp_path):
    c = make_clip(0)
    bad = Clip(c.clip_id, c.video_id, c.frames, c.motion[:, :, :-1], c.gt, c.gt_moving)
    with pytest.raises(ShardFormatError, match="motion masks have shape") as info:
        store.write_split(str(tmp_path / "a"), "test", [bad])
    assert info.value.field == "motion"
    short = Clip(c.clip_id, c.video_id, c.frames, c.motion[:2], c.gt, c.gt_moving)
    with pytest.raises(ShardFormatError, match=r"\[T,H,W\]"):
        store.write_split(str(tmp_path / "b"), "test", [short])
    # clips of different sizes in one split
    other = make_clip(1, h=10)
    with pytest.raises(ShardFormatError, match="same T,H,W"):
        store.write_split(str(tmp_path / "c"), "test", [c, other])
    assert not store.split_exists(str(tmp_path / "c"), "test")


def test_row_with_missing_mask_frame_named_by_file_and_row(tmp_path):
    uri, part = _split(tmp_path)
    rows = [encode_clip(make_clip(i)) for i in (2, 3)]
    rows[1]["motion"] = rows[1]["motion"][:2]  # 2 mask frames for 3 video frames
    rows[0]["frames"][1] = rows[0]["frames"][1][:-5]  # a truncated frame payload
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), part)
    problems = store.validate(uri)
    assert len(problems) == 2
    assert f"file {part}, row 0, field 'frames'" in problems[0] and "frame 1" in problems[0]
    assert f"file {part}, row 1, field 'motion'" in problems[1] and "num_frames = 3" in problems[1]


def test_manifest_that_is_not_json(tmp_path):
    uri, _ = _split(tmp_path)
    open(f"{uri}/test/_manifest.json", "w").write("{oops")
    with pytest.raises(ShardFormatError, match="manifest is not JSON") as info:
        store.count_clips(uri, "test")
    assert info.value.file.endswith("test/_manifest.json")


def test_unreadable_image_in_a_source_tree(tmp_path):
    vid = tmp_path / "src" / "video1" / "frames"
    vid.mkdir(parents=True)
    import cv2

    for i in range(3):
        cv2.imwrite(str(vid / f"{i:03d}.png"), np.full((16, 24, 3), 40 * i, np.uint8))
    (vid / "001.png").write_bytes(b"not a png at all")
    cfg = load_config("smoke", sets=["data.height=16", "data.width=24"])
    with pytest.raises(SourceError, match="unreadable") as info:
        convert(
            "frames", str(tmp_path / "src"), str(tmp_path / "out"), cfg, "train", progress=False
        )
    assert info.value.file.endswith("video1/frames/001.png")
    assert not (tmp_path / "out" / "train").exists()


def test_missing_bucket(s3_server):
    uri = "s3://diod-bucket-that-is-not-there/ds"
    with pytest.raises(StorageError, match="does not exist") as info:
        store.count_clips(uri, "train")
    assert info.value.uri == uri
    with pytest.raises(StorageError, match="does not exist"):
        store.write_split(uri, "train", [make_clip(0)])


def test_unreachable_endpoint_names_the_uri():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed as soon as the block ends: nothing listens there
    cfg = StorageConfig(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1")
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
        store.split_exists("s3://some-bucket/ds", "train", cfg)
    assert info.value.uri == "s3://some-bucket/ds"
    assert f"127.0.0.1:{port}" in str(info.value)


def test_wrong_credentials_are_refused_by_the_server(s3_bucket, monkeypatch):
    """moto accepts any key unless its IAM check is on; turn it on for this test only."""
    import moto.settings

    uri = f"s3://{s3_bucket}/ds"
    store.write_split(uri, "test", [make_clip(0)])
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    with pytest.raises(StorageError, match="access denied") as info:
        store.count_clips(uri, "test")
    assert info.value.uri == uri


def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError)
    err = DataError("bad", uri="s3://b/p", file="b/p/x.parquet", row=3, field="gt", expected="y")
    assert str(err) == "uri s3://b/p, file b/p/x.parquet, row 3, field 'gt': bad (expected y)"
    assert json.dumps(str(err))
