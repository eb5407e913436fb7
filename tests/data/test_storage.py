"""Storage URIs: local paths and a real S3 HTTP endpoint (moto server on 127.0.0.1)."""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import pytest

from diod_ray import storage
from diod_ray.config import DataConfig
from diod_ray.data.errors import DataError, SplitExistsError, StorageError


def test_local_path_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    fs, path = storage.filesystem_for("~/data/x")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == os.path.join(str(tmp_path), "data", "x")
    fs2, path2 = storage.filesystem_for(f"file://{tmp_path}/y")
    assert isinstance(fs2, pafs.LocalFileSystem) and path2 == f"{tmp_path}/y"


def test_bad_uris():
    with pytest.raises(DataError, match="unsupported storage scheme 'gs'"):
        storage.filesystem_for("gs://bucket/x")
    with pytest.raises(DataError, match="no bucket"):
        storage.filesystem_for("s3:///x")
    with pytest.raises(DataError, match="empty storage URI"):
        storage.filesystem_for("")


def test_endpoint_and_region_from_config_then_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert storage.s3_endpoint() == "http://10.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://10.0.0.2:9000")
    assert storage.s3_endpoint() == "http://10.0.0.2:9000"
    cfg = DataConfig(s3_endpoint_url="https://minio.example:443", s3_region="ap-south-1")
    assert storage.s3_endpoint(cfg) == "https://minio.example:443"
    assert storage.s3_region(cfg) == "ap-south-1"
    assert storage.s3_region() == "eu-west-3"
    fs, path = storage.filesystem_for("s3://bkt/a/b/", cfg)
    assert isinstance(fs, pafs.S3FileSystem) and path == "bkt/a/b"
    assert fs.region == "ap-south-1"


def test_s3_round_trip_and_atomic_write(s3_bucket):
    uri = f"s3://{s3_bucket}/prefix"
    fs, path = storage.filesystem_for(uri)  # endpoint from AWS_ENDPOINT_URL(_S3) set by the fixture
    storage.check_bucket(fs, path, uri)
    target = f"{path}/obj.bin"
    storage.atomic_write_bytes(fs, target, b"hello", uri)
    assert storage.read_bytes(fs, target, uri) == b"hello"
    with pytest.raises(SplitExistsError, match="overwrite"):
        storage.atomic_write_bytes(fs, target, b"other", uri)
    assert storage.read_bytes(fs, target, uri) == b"hello"
    storage.atomic_write_bytes(fs, target, b"other", uri, overwrite=True)
    assert storage.read_bytes(fs, target, uri) == b"other"


def test_local_atomic_write_leaves_no_temporary(tmp_path):
    fs, path = storage.filesystem_for(str(tmp_path / "d"))
    storage.atomic_write_bytes(fs, f"{path}/f.json", b"{}", str(tmp_path))
    assert os.listdir(tmp_path / "d") == ["f.json"]


def test_missing_bucket_is_named(s3_server):
    uri = "s3://diod-no-such-bucket/x"
    fs, path = storage.filesystem_for(uri)
    with pytest.raises(StorageError, match="diod-no-such-bucket.*does not exist") as info:
        storage.check_bucket(fs, path, uri)
    assert info.value.uri == uri
