"""Sweep files (sweep.json, <stage>/results.json, reports) and Tune's experiment state, on a local
path or object storage, through the project's storage module (:mod:`diod_ray.storage`).

One ``storage:`` section serves the sweep's files, its Train runs and Tune's experiment state:
:func:`sweep_settings` reads it from the sweep's config (preset, ``--config``, ``--set``) and
:func:`tune_storage` builds Tune's ``(storage_path, storage_filesystem)`` from it, so a MinIO
endpoint given with ``--set storage.endpoint_url=...`` reaches all three."""

from __future__ import annotations

import json
from typing import Any

from diod_ray import storage
from diod_ray.config import StorageConfig


class StoreError(ValueError):
    """A stored sweep file is missing or malformed; the message names the file."""


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def sweep_settings(sweep: dict[str, Any]) -> StorageConfig:
    """The ``storage:`` section of a sweep's config (its preset, config file and --set
    overrides, as stored in the sweep's metadata)."""
    from diod_ray.config import apply_overrides, load_config

    cfg = load_config(sweep["preset"], sweep.get("config_file"), None)
    return apply_overrides(cfg, sweep.get("overrides", {})).storage


def tune_storage(root: str, settings: StorageConfig | None = None) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for ray.tune.RunConfig / Tuner.restore, with the
    sweep's endpoint. Refuses a node-local ``root`` on a multi-node cluster (the trials' Train
    runs and the experiment state must be where every node and a restarted driver find them)."""
    from diod_ray.training.shared_storage import require_shared_storage

    require_shared_storage(root, "the sweep's --storage", settings)
    return storage.ray_storage(root, settings)


def exists(uri: str, settings: StorageConfig | None = None) -> bool:
    return storage.uri_exists(uri, settings)


def read_json(uri: str, settings: StorageConfig | None = None) -> dict[str, Any]:
    try:
        return json.loads(storage.read_uri(uri, settings).decode())
    except json.JSONDecodeError as exc:
        raise StoreError(f"{uri}: not valid JSON ({exc})") from exc
    except Exception as exc:
        raise StoreError(f"{uri}: cannot read ({exc})") from exc


def write_bytes(uri: str, data: bytes, settings: StorageConfig | None = None) -> None:
    """Write a sweep file atomically; sweep files are derived data, a rewrite replaces the old."""
    storage.write_uri(uri, data, settings, overwrite=True)


def write_json(uri: str, data: dict[str, Any], settings: StorageConfig | None = None) -> None:
    """Strict JSON (``allow_nan=False``): a metric that could not be computed is null."""
    safe = storage.json_safe(data)
    write_bytes(uri, json.dumps(safe, indent=2, default=str, allow_nan=False).encode(), settings)
