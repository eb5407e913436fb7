"""Storage URIs: local paths and a real S3 HTTP endpoint (moto server on 127.0.0.1); directories
published under a completion marker; the storage: config section."""

from __future__ import annotations

import json
import os

import pyarrow.fs as pafs
import pytest

from diod_ray import published, storage
from diod_ray.config import ConfigError, StorageConfig, apply_overrides, load_preset, parse_set
from diod_ray.errors import DataError, OverwriteError, StorageError


def test_local_path_expands_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    fs, path = storage.filesystem_for("~/data/x")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == os.path.join(str(tmp_path), "data", "x")
    fs2, path2 = storage.filesystem_for(f"file://{tmp_path}/y")
    assert isinstance(fs2, pafs.LocalFileSystem) and path2 == f"{tmp_path}/y"
    assert storage.is_local("~/x") and storage.is_local("file:///x")
    assert not storage.is_local("s3://b/x")


def test_bad_uris():
    with pytest.raises(DataError, match="unsupported storage scheme 'gs'"):
        storage.filesystem_for("gs://bucket/x")
    with pytest.raises(DataError, match="no bucket"):
        storage.filesystem_for("s3:///x")
    with pytest.raises(DataError, match="empty storage URI"):
        storage.filesystem_for("")


def test_endpoint_and_region_from_the_storage_section_then_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert storage.s3_endpoint() == "http://10.0.0.1:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://10.0.0.2:9000")
    assert storage.s3_endpoint() == "http://10.0.0.2:9000"
    cfg = StorageConfig(endpoint_url="https://minio.example:443", region="ap-south-1")
    assert storage.s3_endpoint(cfg) == "https://minio.example:443"
    assert storage.s3_region(cfg) == "ap-south-1"
    assert storage.s3_region() == "eu-west-3"
    fs, path = storage.filesystem_for("s3://bkt/a/b/", cfg)
    assert isinstance(fs, pafs.S3FileSystem) and path == "bkt/a/b"
    assert fs.region == "ap-south-1"


def test_the_storage_section_is_one_config_key_and_the_old_data_keys_say_where_it_moved():
    cfg = apply_overrides(
        load_preset("smoke"),
        {"storage.endpoint_url": "http://minio:9000", "storage.shared_local": True},
    )
    assert cfg.storage == StorageConfig("http://minio:9000", "", True)
    for old, new in (
        ("data.s3_endpoint_url", "storage.endpoint_url"),
        ("data.s3_region", "storage.region"),
    ):
        with pytest.raises(ConfigError, match=f"'{old}' is now '{new}'"):
            parse_set(f"{old}=x")


def test_s3_round_trip_and_atomic_write(s3_bucket):
    uri = f"s3://{s3_bucket}/prefix"
    fs, path = storage.filesystem_for(uri)  # endpoint from AWS_ENDPOINT_URL(_S3) set by the fixture
    storage.check_bucket(fs, path, uri)
    target = f"{path}/obj.bin"
    storage.atomic_write_bytes(fs, target, b"hello", uri)
    assert storage.read_bytes(fs, target, uri) == b"hello"
    with pytest.raises(OverwriteError, match="overwrite"):
        storage.atomic_write_bytes(fs, target, b"other", uri)
    assert storage.read_bytes(fs, target, uri) == b"hello"
    storage.atomic_write_bytes(fs, target, b"other", uri, overwrite=True)
    assert storage.read_bytes(fs, target, uri) == b"other"
    assert storage.list_files(fs, path) == {"obj.bin": 5}


def test_the_storage_section_endpoint_wins_over_the_environment(s3_server, s3_bucket, monkeypatch):
    """storage.endpoint_url alone reaches the server: the environment points nowhere."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    settings = StorageConfig(endpoint_url=s3_server)
    uri = f"s3://{s3_bucket}/via-config/x.json"
    storage.write_json(uri, {"a": 1}, settings)
    assert storage.read_json(uri, settings) == {"a": 1}
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.read_json(uri)


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


# ------------------------------------------------------------------------------------------
# Published directories: files first, the marker last; a half-written one is never used
# ------------------------------------------------------------------------------------------


def _local_dir(tmp_path, name: str, files: dict[str, bytes]) -> str:
    d = tmp_path / name
    d.mkdir()
    for n, data in files.items():
        (d / n).write_bytes(data)
    return str(d)


@pytest.fixture(params=["local", "s3"])
def publish_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "runs")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/runs"


def test_a_half_written_directory_is_not_used_and_a_published_one_is(publish_root, tmp_path):
    uri = f"{publish_root}/r/kept/burn_in_end"
    # half-written: the files a crashed copy left, no marker
    storage.upload_directory(_local_dir(tmp_path, "half", {"state.pt": b"x" * 10}), uri)
    assert published.read_marker(uri) is None
    with pytest.raises(StorageError, match="not published") as info:
        published.wait_for_marker(uri, timeout_s=0.3, poll_s=0.1)
    assert info.value.uri == uri
    # published over it: files moved into place, the marker last, with its fields and sizes
    files = {"state.pt": b"y" * 100, "config.yaml": b"a: 1\n"}
    published.publish_directory(_local_dir(tmp_path, "full", files), uri, {"step": 7})
    marker = published.wait_for_marker(uri, timeout_s=0.3, poll_s=0.1)
    assert marker == {"step": 7, "files": {"config.yaml": 5, "state.pt": 100}}
    fs, path = storage.filesystem_for(uri)
    assert storage.read_bytes(fs, f"{path}/state.pt", uri) == b"y" * 100
    # nothing left under the temporary prefix
    parent = path.rsplit("/", 1)[0]
    assert storage.list_dirs(fs, parent) == ["burn_in_end"]


def test_a_marker_whose_files_are_not_all_there_is_not_complete(publish_root, tmp_path):
    uri = f"{publish_root}/r/kept/burn_in_epoch_2"
    published.publish_directory(_local_dir(tmp_path, "d", {"state.pt": b"z" * 50}), uri, {})
    assert published.read_marker(uri) is not None
    fs, path = storage.filesystem_for(uri)
    storage.atomic_write_bytes(fs, f"{path}/state.pt", b"z" * 20, uri, overwrite=True)  # torn
    assert published.read_marker(uri) is None
    marker = json.loads(storage.read_bytes(fs, f"{path}/{published.COMPLETE_MARKER}", uri))
    assert marker["files"] == {"state.pt": 50}
