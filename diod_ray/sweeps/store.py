"""Sweep files (sweep.json, <stage>/results.json, reports) on a local path or s3://, through the
project's storage module (:mod:`diod_ray.storage`): the only code that knows what s3:// means."""

from __future__ import annotations

import json
from typing import Any

from diod_ray import storage


class StoreError(ValueError):
    """A stored sweep file is missing or malformed; the message names the file."""


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def exists(uri: str) -> bool:
    return storage.uri_exists(uri)


def read_json(uri: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_uri(uri).decode())
    except json.JSONDecodeError as exc:
        raise StoreError(f"{uri}: not valid JSON ({exc})") from exc
    except Exception as exc:
        raise StoreError(f"{uri}: cannot read ({exc})") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write a sweep file atomically; sweep files are derived data, a rewrite replaces the old."""
    storage.write_uri(uri, data, overwrite=True)


def write_json(uri: str, data: dict[str, Any]) -> None:
    """Strict JSON (``allow_nan=False``): a metric that could not be computed is null."""
    safe = storage.json_safe(data)
    write_bytes(uri, json.dumps(safe, indent=2, default=str, allow_nan=False).encode())
