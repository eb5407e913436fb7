"""Directories published under a completion marker: a reader never uses a half-written one.

For data written outside a manager that makes it atomic (Ray Train's checkpoints are; the kept
burn-in checkpoints of :mod:`diod_ray.training.state` are not): :func:`publish_directory` uploads
the files under a temporary prefix, moves them into place (:func:`diod_ray.storage.replace_dir`)
and writes :data:`COMPLETE_MARKER` **last**, listing each file with its size. :func:`read_marker`
returns the marker only when every listed file is there with that size; :func:`wait_for_marker`
waits for it a bounded time and then fails naming the URI. Works on any URI storage opens.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

from diod_ray import storage
from diod_ray.errors import StorageError

if TYPE_CHECKING:
    from diod_ray.config import StorageConfig

# written last into a published directory: {"files": {name: bytes}, ...the publisher's fields}
COMPLETE_MARKER = "_COMPLETE"


def publish_directory(
    local_dir: str, uri: str, marker: dict[str, Any], settings: StorageConfig | None = None
) -> None:
    """Publish the files of ``local_dir`` at ``uri``: temporary prefix ``<parent>/_tmp/<name>-<id>``,
    the old marker deleted (an old copy stops being complete), the files moved into place, the
    marker (``marker`` plus each file's size) written last."""
    fs, path = storage.filesystem_for(uri, settings)
    names = sorted(os.listdir(local_dir))
    parent, name = posixpath.split(path)
    tmp_root = posixpath.join(parent, storage.TMP_DIR)
    tmp = posixpath.join(tmp_root, f"{name}-{uuid.uuid4().hex[:12]}")
    with storage.storage_errors(uri, file=path, what="publishing"):
        storage.create_dir(fs, tmp)
        for n in names:
            with (
                open(os.path.join(local_dir, n), "rb") as src,
                storage.open_output(fs, posixpath.join(tmp, n)) as dst,
            ):
                shutil.copyfileobj(src, dst, 8 << 20)
        mpath = posixpath.join(path, COMPLETE_MARKER)
        storage.delete_file(fs, mpath)
        trash = posixpath.join(tmp_root, f"old-{uuid.uuid4().hex[:12]}")
        storage.replace_dir(fs, tmp, path, names, trash)
        sizes = {n: os.path.getsize(os.path.join(local_dir, n)) for n in names}
        body = json.dumps({**marker, "files": sizes}, indent=1).encode()
        storage.atomic_write_bytes(fs, mpath, body, uri, overwrite=True)
        storage.delete_dir_if_empty(fs, tmp_root)


def read_marker(uri: str, settings: StorageConfig | None = None) -> dict[str, Any] | None:
    """The marker of a published directory once it is complete (every listed file present with
    its size), else None."""
    fs, path = storage.filesystem_for(uri, settings)
    mpath = posixpath.join(path, COMPLETE_MARKER)
    with storage.storage_errors(uri, file=mpath, what="reading the completion marker"):
        if not storage.exists(fs, mpath):
            return None
        marker = json.loads(storage.read_bytes(fs, mpath, uri).decode())
        present = storage.list_files(fs, path)
    files = marker.get("files", {})
    if any(present.get(n) != size for n, size in files.items()):
        return None
    return marker


def wait_for_marker(
    uri: str,
    settings: StorageConfig | None = None,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Wait up to ``timeout_s`` for ``uri`` to be published; returns its marker, or raises
    :class:`~diod_ray.errors.StorageError` naming the URI."""
    deadline = time.monotonic() + timeout_s
    while True:
        marker = read_marker(uri, settings)
        if marker is not None:
            return marker
        if time.monotonic() >= deadline:
            raise StorageError(
                f"not published: no complete {COMPLETE_MARKER} marker after {timeout_s:g} s "
                "(the writer is still copying, or died half-way)",
                uri=uri,
                expected=f"a directory whose {COMPLETE_MARKER} is written last",
            )
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
