"""Storage is a URI: a local path (``~`` expanded, optional ``file://``) or ``s3://bucket/prefix``.

The ground floor: the only module that imports ``pyarrow.fs`` or names the ``s3://`` scheme
(tests/platform/test_layout.py checks it by import). Everything above opens a URI here and gets
plain operations: read / write bytes and JSON atomically, list, upload, move directories, and the
``(storage_path, storage_filesystem)`` pair Ray Train and Tune take.

Endpoint and region come from the config's ``storage:`` section
(:class:`~diod_ray.config.StorageConfig`, called ``settings`` here) or the standard AWS environment
variables (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``).
Credentials are never configured here: pyarrow's S3 client takes them from the AWS default chain
(environment, profile, instance role). pyarrow's ``S3FileSystem()`` ignores ``AWS_ENDPOINT_URL``,
so the endpoint is always passed explicitly as ``endpoint_override``.

Atomic writes: :func:`atomic_write_bytes` writes to a temporary name and moves it into place
(local: ``os.replace``); on S3 an object written in one PUT / completed multipart upload is only
visible once complete, so it is written directly under its final key. Whole directories are made
atomic one level up with :func:`replace_dir`: ``diod_ray/published.py`` (temporary prefix, then a
marker written last) and ``data/shards/store.py`` (temporary prefix, then a manifest written last).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from diod_ray.errors import DataError, OverwriteError, StorageError

if TYPE_CHECKING:
    from diod_ray.config import Config, StorageConfig

S3 = "s3://"
# temporary prefixes of atomic directory writes (shards, published directories) live here
TMP_DIR = "_tmp"


def is_local(uri: str) -> bool:
    """True for a path on this machine's file system (``~``, absolute, relative, ``file://``)."""
    return not uri.startswith(S3)


def s3_endpoint(settings: StorageConfig | None = None) -> str:
    """The S3 endpoint URL: ``storage.endpoint_url``, then AWS_ENDPOINT_URL_S3, then
    AWS_ENDPOINT_URL ("" = AWS)."""
    if settings is not None and settings.endpoint_url:
        return settings.endpoint_url
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def s3_region(settings: StorageConfig | None = None) -> str:
    if settings is not None and settings.region:
        return settings.region
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""


def _s3_filesystem(settings: StorageConfig | None) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {
        "connect_timeout": 5.0,
        "request_timeout": 60.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    # No access_key / secret_key / session_token here, ever: the filesystem is pickled into Ray
    # tasks and into Tune/Train experiment state (RunConfig.storage_filesystem -> tuner.pkl,
    # basic-variant-state-*.json on the run's storage), so explicit keys would be written to
    # storage and frozen (an expiring session token would outlive its refresh). Each process
    # resolves credentials itself through the AWS default chain: environment variables, shared
    # profile, web identity (IRSA), container / instance role. On a cluster every node therefore
    # needs them in its own environment (cluster/README.md: a Kubernetes Secret or an IAM role).
    endpoint = s3_endpoint(settings)
    region = s3_region(settings)
    if endpoint:
        scheme, sep, rest = endpoint.partition("://")
        if sep:
            kwargs["scheme"] = scheme
            kwargs["endpoint_override"] = rest.rstrip("/")
        else:
            kwargs["endpoint_override"] = endpoint.rstrip("/")
        # S3-compatible servers (MinIO, moto, Ceph) rarely care, but the signer needs a region
        kwargs["region"] = region or "us-east-1"
    elif region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str, settings: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a storage URI; the path is what the filesystem expects.

    ``s3://bucket/prefix`` -> ``(S3FileSystem, "bucket/prefix")``; anything else is a local path
    (``~`` expanded, made absolute) -> ``(LocalFileSystem, "/abs/path")``.
    """
    if not uri:
        raise DataError("empty storage URI", expected="a local path or s3://bucket/prefix")
    if not is_local(uri):
        raw = uri[len(S3) :]
        path = raw.strip("/")
        if not path or raw.startswith("/"):
            raise DataError("no bucket in S3 URI", uri=uri, expected="s3://bucket/prefix")
        return _s3_filesystem(settings), path
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise DataError(
            f"unsupported storage scheme {scheme!r}", uri=uri, expected="a local path or s3://"
        )
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    """Join a URI or filesystem path with sub-paths using ``/``."""
    return posixpath.join(base.rstrip("/"), *parts)


def uri_of(path: str, fs: pafs.FileSystem | None) -> str:
    """The URI of ``path`` on ``fs`` (e.g. a Ray ``Checkpoint``'s ``path`` and ``filesystem``)."""
    if isinstance(fs, pafs.S3FileSystem):
        return S3 + path.lstrip("/")
    return path


def uris_of(uri: str, paths: list[str]) -> list[str]:
    """The URIs of filesystem ``paths`` that :func:`filesystem_for` gave for ``uri``."""
    return [S3 + p for p in paths] if not is_local(uri) else list(paths)


def _explain(exc: BaseException) -> str:
    text = str(exc)
    low = text.lower().replace("_", "")
    if "nosuchbucket" in low or "bucket does not exist" in low:
        return f"the bucket does not exist ({text})"
    denied = ("accessdenied", "access denied", "invalidaccesskeyid", "forbidden", "signature")
    if any(d in low for d in denied):
        return f"access denied: check the AWS credentials in the environment or profile ({text})"
    if any(w in low for w in ("curl", "connect", "resolve", "timeout", "timed out")):
        return f"cannot reach the S3 endpoint ({text})"
    return text


@contextlib.contextmanager
def storage_errors(uri: str, file: str | None = None, what: str = "") -> Iterator[None]:
    """Turn filesystem / network errors into one :class:`StorageError` naming the URI and file."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise StorageError(
            f"{what + ': ' if what else ''}not found ({exc})", uri=uri, file=file
        ) from exc
    except (OSError, ValueError) as exc:
        endpoint = ""
        if not is_local(uri):
            endpoint = f" [endpoint {s3_endpoint() or 'AWS default'}]"
        raise StorageError(
            f"{what + ': ' if what else ''}{_explain(exc)}{endpoint}", uri=uri, file=file
        ) from exc


def check_bucket(fs: pafs.FileSystem, path: str, uri: str) -> None:
    """For S3, fail early and clearly when the bucket is missing or the endpoint unreachable."""
    if not isinstance(fs, pafs.S3FileSystem):
        return
    bucket = path.split("/")[0]
    with storage_errors(uri, what=f"checking bucket {bucket!r}"):
        info = fs.get_file_info(bucket)
    if info.type == pafs.FileType.NotFound:
        raise StorageError(
            f"the bucket {bucket!r} does not exist", uri=uri, expected="an existing bucket"
        )


# ---- operations on an opened (filesystem, path): for code that opened a URI once ----------


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def has_files(fs: pafs.FileSystem, path: str) -> bool:
    """True when ``path`` is a file or a directory holding at least one file."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        return bool(fs.get_file_info(pafs.FileSelector(path, recursive=True)))
    return info.type != pafs.FileType.NotFound


def list_files(fs: pafs.FileSystem, path: str, suffix: str = "") -> dict[str, int]:
    """File name -> size in bytes of the files directly under ``path`` (none if it is missing)."""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return {
        posixpath.basename(i.path): int(i.size)
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(suffix)
    }


def list_dirs(fs: pafs.FileSystem, path: str) -> list[str]:
    """Names of the directories directly under ``path``, sorted (none if it is missing)."""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)


def read_bytes(fs: pafs.FileSystem, path: str, uri: str) -> bytes:
    with storage_errors(uri, file=path, what="reading"):
        with fs.open_input_stream(path) as f:
            return f.read()


def open_input(fs: pafs.FileSystem, path: str):
    """A seekable file for ``path`` (Parquet readers need random access)."""
    return fs.open_input_file(path)


def open_output(fs: pafs.FileSystem, path: str):
    """A stream writing ``path`` (directories created as needed); not atomic on a local disk."""
    return fs.open_output_stream(path)


def atomic_write_bytes(
    fs: pafs.FileSystem, path: str, data: bytes, uri: str, overwrite: bool = False
) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file; refuse to replace one
    unless ``overwrite``. Local: temporary name + rename. S3: one PUT (atomic by S3 semantics)."""
    with storage_errors(uri, file=path, what="writing"):
        if not overwrite and exists(fs, path):
            raise OverwriteError(
                "file exists; pass overwrite=True / --overwrite", uri=uri, file=path
            )
        parent = posixpath.dirname(path)
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(parent, recursive=True)
            tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
            try:
                with fs.open_output_stream(tmp) as f:
                    f.write(data)
                fs.move(tmp, path)
            finally:
                if exists(fs, tmp):
                    fs.delete_file(tmp)
        else:
            with fs.open_output_stream(path) as f:
                f.write(data)


def create_dir(fs: pafs.FileSystem, path: str) -> None:
    fs.create_dir(path, recursive=True)


def delete_file(fs: pafs.FileSystem, path: str) -> None:
    """Delete the file ``path`` (nothing if it is missing)."""
    if exists(fs, path):
        fs.delete_file(path)


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    """Delete ``path`` and everything under it (nothing if it is missing)."""
    if exists(fs, path):
        fs.delete_dir(path)


def delete_dir_if_empty(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)) and exists(fs, path):
            fs.delete_dir(path)


def replace_dir(fs: pafs.FileSystem, src: str, dst: str, names: list[str], trash: str) -> None:
    """Move the files ``names`` of directory ``src`` to ``dst`` (replacing what is there); the
    caller writes its marker / manifest after this returns. Local: the old ``dst`` is renamed to
    ``trash``, ``src`` renamed to ``dst`` (one rename), ``trash`` deleted. S3 has no rename: the
    old objects are deleted first (a short window with nothing at ``dst``), each new object is
    copied server-side, and ``src`` is deleted."""
    old = exists(fs, dst)
    if isinstance(fs, pafs.LocalFileSystem):
        if old:
            fs.create_dir(posixpath.dirname(trash), recursive=True)
            fs.move(dst, trash)
        fs.create_dir(posixpath.dirname(dst), recursive=True)
        fs.move(src, dst)
        if old:
            fs.delete_dir(trash)
        return
    if old:
        fs.delete_dir_contents(dst, missing_dir_ok=True)
    for name in names:
        fs.copy_file(posixpath.join(src, name), posixpath.join(dst, name))
    fs.delete_dir(src)


# ---- whole-URI helpers: one call, no filesystem handling at the call site ------------------


def normalise_uri(uri: str) -> str:
    """Expand ``~`` and make local paths absolute; ``s3://`` URIs lose a trailing ``/`` only."""
    if not is_local(uri):
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def run_uri(cfg: Config) -> str:
    """The run directory ``<run.storage_path>/<run.name>``: ``(storage_path, name)`` identify a run."""
    return f"{normalise_uri(cfg.run.storage_path)}/{cfg.run.name}"


def ray_storage(
    uri: str, settings: StorageConfig | None = None
) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for ``ray.train.RunConfig`` / ``ray.tune.RunConfig``:
    an S3 URI becomes ``("bucket/prefix", S3FileSystem)`` (endpoint from ``storage:`` or the
    environment, credentials from the AWS chain, see above); a local path is created and passed
    as is."""
    uri = normalise_uri(uri)
    if not is_local(uri):
        fs, path = filesystem_for(uri, settings)
        return path, fs
    os.makedirs(uri, exist_ok=True)
    return uri, None


def uri_exists(uri: str, settings: StorageConfig | None = None) -> bool:
    fs, path = filesystem_for(uri, settings)
    with storage_errors(uri, what="checking"):
        return exists(fs, path)


def read_uri(uri: str, settings: StorageConfig | None = None) -> bytes:
    """The bytes of the file at ``uri``; a missing or unreadable file raises :class:`StorageError`."""
    fs, path = filesystem_for(uri, settings)
    return read_bytes(fs, path, uri)


def write_uri(
    uri: str, data: bytes, settings: StorageConfig | None = None, overwrite: bool = True
) -> None:
    """Write ``data`` to ``uri`` atomically (see :func:`atomic_write_bytes`)."""
    fs, path = filesystem_for(uri, settings)
    atomic_write_bytes(fs, path, data, uri, overwrite=overwrite)


def json_safe(obj: Any) -> Any:
    """NaN / inf -> null, through dicts, lists and tuples, so the output is strict JSON (a metric
    that could not be computed is null, never NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def read_json(uri: str, settings: StorageConfig | None = None) -> Any:
    """Parse the JSON file at ``uri``; invalid JSON raises :class:`StorageError` naming it."""
    data = read_uri(uri, settings)
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"not valid JSON ({exc})", uri=uri) from exc


def write_json(uri: str, value: Any, settings: StorageConfig | None = None, **dumps: Any) -> None:
    """Strict JSON (``allow_nan=False`` unless the caller says otherwise), written atomically."""
    dumps.setdefault("allow_nan", False)
    write_uri(uri, json.dumps(value, **dumps).encode(), settings)


def upload_file(local_path: str, uri: str, settings: StorageConfig | None = None) -> int:
    """Copy one local file to ``uri`` (replacing it); returns the bytes copied."""
    fs, path = filesystem_for(uri, settings)
    with storage_errors(uri, file=path, what="uploading"):
        fs.create_dir(posixpath.dirname(path), recursive=True)
        pafs.copy_files(local_path, path, destination_filesystem=fs)
    return os.path.getsize(local_path)


def upload_directory(local_dir: str, uri: str, settings: StorageConfig | None = None) -> int:
    """Copy a local directory's files to ``uri`` (local path or s3://), replacing same names;
    returns the bytes copied."""
    fs, path = filesystem_for(uri, settings)
    with storage_errors(uri, file=path, what="uploading"):
        fs.create_dir(path, recursive=True)
        pafs.copy_files(local_dir, path, destination_filesystem=fs)
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(local_dir) for f in files
    )
