"""Where a run lives: ``<run.storage_path>/<run.name>`` on local disk or in S3."""

from __future__ import annotations

import os

from diod_ray.config import Config


def normalise_uri(uri: str) -> str:
    """Expand ``~`` and make local paths absolute; ``s3://`` URIs are returned unchanged."""
    if uri.startswith("s3://"):
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def run_uri(cfg: Config) -> str:
    """The run directory: ``(storage_path, name)`` identify a run."""
    return f"{normalise_uri(cfg.run.storage_path)}/{cfg.run.name}"


def upload_directory(local_dir: str, uri: str, cfg: Config | None = None) -> None:
    """Copy a local directory's files to ``uri`` (local path or s3://), replacing same names."""
    import pyarrow.fs as pafs

    if not uri.startswith("s3://"):
        os.makedirs(uri, exist_ok=True)
        pafs.copy_files(local_dir, uri)
        return
    from diod_ray.data.storage import filesystem_for

    fs, path = filesystem_for(uri, cfg.data if cfg is not None else None)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(local_dir, path, destination_filesystem=fs)
