"""Clip shards: schema, atomic split writes (local and S3), reading, counting, validation."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from diod_ray.data.errors import SplitExistsError, SplitMissingError
from diod_ray.data.shards import store
from diod_ray.data.shards.rows import (
    META_VERSION_KEY,
    SCHEMA_VERSION,
    Clip,
    decode_row,
    encode_clip,
)


def make_clip(i: int, t=3, h=8, w=12, gt=True, seed=0) -> Clip:
    rng = np.random.default_rng([seed, i])
    g = rng.integers(0, 4, (t, h, w)).astype(np.int32) if gt else None
    moving = None
    if gt:
        moving = np.zeros((t, 4), bool)
        moving[:, 1] = True
    return Clip(
        clip_id=f"v{i // 2}:{i:03d}",
        video_id=f"v{i // 2}",
        frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        motion=rng.integers(0, 300, (t, h, w)).astype(np.int32),
        gt=g,
        gt_moving=moving,
        frame_start=i * t,
        source="hand-made",
        camera_motion=bool(i % 2),
    )


@pytest.mark.parametrize("codec", ["raw", "png"])
def test_encode_decode_round_trip(codec):
    clip = make_clip(1)
    row = encode_clip(clip, frame_codec=codec, mask_codec=codec)
    assert row["schema_version"] == SCHEMA_VERSION and row["num_ids"] == 3
    back = decode_row(row)
    np.testing.assert_array_equal(back.frames, clip.frames)
    np.testing.assert_array_equal(back.motion, clip.motion)
    np.testing.assert_array_equal(back.gt, clip.gt)
    np.testing.assert_array_equal(back.gt_moving, clip.gt_moving)
    assert back.frame_indices == [3, 4, 5] and back.camera_motion is True


def test_write_read_local_split(tmp_path):
    uri = str(tmp_path / "ds")
    clips = [make_clip(i) for i in range(5)]
    manifest = store.write_split(uri, "test", clips, clips_per_file=2)
    assert [f["clips"] for f in manifest["files"]] == [2, 2, 1]
    assert manifest["max_num_ids"] == 3 and manifest["has_gt"]
    assert store.split_exists(uri, "test") and not store.split_exists(uri, "train")
    assert store.count_clips(uri, "test") == 5
    # the temporary folder is gone; only the split and its manifest remain
    assert sorted(os.listdir(uri)) == ["test"]
    files = sorted(os.listdir(f"{uri}/test"))
    assert files == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    meta = pq.read_schema(f"{uri}/test/part-00000.parquet").metadata
    assert meta[META_VERSION_KEY] == str(SCHEMA_VERSION).encode()
    back = {c.clip_id: c for c in store.iter_clips(uri, "test")}
    assert set(back) == {c.clip_id for c in clips}
    for c in clips:
        np.testing.assert_array_equal(back[c.clip_id].frames, c.frames)
        np.testing.assert_array_equal(back[c.clip_id].motion, c.motion)
    assert store.validate(uri) == []


def test_existing_split_is_not_overwritten(tmp_path):
    uri = str(tmp_path / "ds")
    store.write_split(uri, "train", [make_clip(i, gt=False) for i in range(3)])
    before = open(f"{uri}/train/_manifest.json").read()
    with pytest.raises(SplitExistsError, match="already exists"):
        store.write_split(uri, "train", [make_clip(9, gt=False)])
    assert open(f"{uri}/train/_manifest.json").read() == before
    store.write_split(uri, "train", [make_clip(9, gt=False)], overwrite=True)
    assert store.count_clips(uri, "train") == 1
    assert sorted(os.listdir(uri)) == ["train"]


def test_failed_write_leaves_nothing(tmp_path):
    uri = str(tmp_path / "ds")

    def clips():
        yield make_clip(0)
        yield make_clip(1)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        store.write_split(uri, "test", clips(), clips_per_file=1)
    assert not store.split_exists(uri, "test")
    assert os.listdir(uri) == []
    with pytest.raises(SplitMissingError, match="split 'test' does not exist"):
        store.count_clips(uri, "test")


def test_s3_split(s3_bucket):
    uri = f"s3://{s3_bucket}/diod/ds"
    clips = [make_clip(i) for i in range(3)]
    store.write_split(uri, "test", clips, clips_per_file=2)
    assert store.split_exists(uri, "test")
    assert store.count_clips(uri, "test") == 3
    assert store.part_uris(uri, "test")[0] == f"s3://{s3_bucket}/diod/ds/test/part-00000.parquet"
    got = sorted(c.clip_id for c in store.iter_clips(uri, "test"))
    assert got == sorted(c.clip_id for c in clips)
    assert store.list_splits(uri) == ["test"]
    assert store.validate(uri, "test") == []
    with pytest.raises(SplitExistsError):
        store.write_split(uri, "test", clips[:1])
    store.write_split(uri, "test", clips[:1], overwrite=True)
    assert store.count_clips(uri, "test") == 1
    manifest = store.read_manifest(uri, "test")
    entry = {"name": "part-00000.parquet", "clips": 1, "clip_ids": [clips[0].clip_id]}
    assert json.loads(json.dumps(manifest))["files"] == [entry]
