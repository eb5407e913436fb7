"""Clip shards: ``<uri>/<split>/part-NNNNN.parquet`` plus ``<uri>/<split>/_manifest.json``.

Writing is atomic per split: part files go to ``<uri>/_tmp/<split>-<random>/`` and are moved to
``<uri>/<split>/`` only when every clip is written (:func:`diod_ray.storage.replace_dir`: one
rename on a local disk, server-side copies on S3). The manifest (file list, clip counts, schema
version) is written last, so a split "exists" exactly when its manifest does. Nothing existing is
replaced unless ``overwrite``. Each file's entry lists its clip ids too (``clip_ids``), and the
manifest the largest motion-mask id (``max_motion_id``), so a reader plans its reads from this one
small file without opening a part file; manifests written before either key still load
(:meth:`Split.file_clip_ids` is then None, and the pipeline reads the footers once instead).

Reading opens a split once (:func:`open_split`: filesystem, paths, manifest) and hands the
:class:`Split` down; the URI-taking helpers below are one-call conveniences over it.
"""

from __future__ import annotations

import datetime as _dt
import json
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from diod_ray import storage
from diod_ray.data.errors import (
    DataError,
    ShardFormatError,
    SplitExistsError,
    SplitMissingError,
)
from diod_ray.data.shards.rows import (
    SCHEMA,
    SCHEMA_VERSION,
    Clip,
    check_table_schema,
    decode_row,
    encode_clip,
)

if TYPE_CHECKING:
    from diod_ray.config import StorageConfig

MANIFEST = "_manifest.json"
TMP_DIR = storage.TMP_DIR


# ------------------------------------------------------------------------------------------
# Manifest, existence, counts
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One opened split: where it is (URI, filesystem, the filesystem's path of ``<uri>/<split>``)
    and its manifest, read once. Hand it down instead of the URI."""

    uri: str
    name: str
    fs: object  # the storage filesystem (diod_ray.storage.filesystem_for)
    path: str
    manifest: dict

    @property
    def clips(self) -> int:
        return int(self.manifest["clips"])

    @property
    def part_paths(self) -> list[str]:
        """Filesystem paths of the part files, in manifest order."""
        return [posixpath.join(self.path, f["name"]) for f in self.manifest["files"]]

    @property
    def part_uris(self) -> list[str]:
        """The part files as URIs (``s3://...`` or absolute local paths)."""
        return storage.uris_of(self.uri, self.part_paths)

    @property
    def file_clip_counts(self) -> list[int]:
        """Clips per part file, in manifest order."""
        return [int(f["clips"]) for f in self.manifest["files"]]

    def file_clip_ids(self) -> list[list[str]] | None:
        """Each part file's clip ids in stored order, from the manifest; None for a manifest
        written before they were listed there (the caller then reads them from the files)."""
        files = self.manifest["files"]
        if not files or any("clip_ids" not in f for f in files):
            return None
        return [[str(c) for c in f["clip_ids"]] for f in files]

    def read_part(self, fpath: str, columns=None) -> pa.Table:
        return read_part(self.fs, fpath, self.uri, columns)


def open_split(uri: str, split: str, settings: StorageConfig | None = None) -> Split:
    """Open ``<uri>/<split>``: check the bucket, read and check the manifest (one request each)."""
    fs, root = storage.filesystem_for(uri, settings)
    storage.check_bucket(fs, root, uri)
    path = posixpath.join(root, split)
    mpath = posixpath.join(path, MANIFEST)
    with storage.storage_errors(uri, file=mpath, what=f"reading the manifest of split {split!r}"):
        if not storage.exists(fs, mpath):
            raise SplitMissingError(
                f"split {split!r} does not exist (no {MANIFEST})",
                uri=uri,
                file=mpath,
                expected="a split written by `python -m diod_ray.data generate|convert`",
            )
    raw = storage.read_bytes(fs, mpath, uri)
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ShardFormatError(f"manifest is not JSON ({exc})", uri=uri, file=mpath) from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ShardFormatError(
            f"manifest schema version {manifest.get('schema_version')}",
            uri=uri,
            file=mpath,
            expected=f"version {SCHEMA_VERSION}",
        )
    return Split(uri, split, fs, path, manifest)


def read_manifest(uri: str, split: str, settings: StorageConfig | None = None) -> dict:
    return open_split(uri, split, settings).manifest


def split_exists(uri: str, split: str, settings: StorageConfig | None = None) -> bool:
    """True when ``<uri>/<split>/_manifest.json`` exists (the split was written completely)."""
    fs, path = storage.filesystem_for(uri, settings)
    storage.check_bucket(fs, path, uri)
    mpath = posixpath.join(path, split, MANIFEST)
    with storage.storage_errors(uri, file=mpath, what=f"checking split {split!r}"):
        return storage.exists(fs, mpath)


def count_clips(uri: str, split: str, settings: StorageConfig | None = None) -> int:
    return open_split(uri, split, settings).clips


def part_files(uri: str, split: str, settings: StorageConfig | None = None) -> list[str]:
    """Filesystem paths of the split's part files, in manifest order."""
    return open_split(uri, split, settings).part_paths


def part_uris(uri: str, split: str, settings: StorageConfig | None = None) -> list[str]:
    """Like :func:`part_files` but as URIs (``s3://...`` or absolute local paths)."""
    return open_split(uri, split, settings).part_uris


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------


@dataclass
class ShardWriter:
    """Write clips of one split as Parquet part files of ``clips_per_file`` rows each.

    Use as a context manager: on a clean exit the split is committed atomically; on an exception
    the temporary files are removed and nothing at the destination changes.
    """

    uri: str
    split: str
    settings: StorageConfig | None = None
    clips_per_file: int = 32
    overwrite: bool = False
    frame_codec: str = "raw"
    mask_codec: str = "raw"
    compression: str = "zstd"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clips_per_file < 1:
            raise ValueError("clips_per_file must be >= 1")
        self.fs, self.path = storage.filesystem_for(self.uri, self.settings)
        self.final = posixpath.join(self.path, self.split)
        self.tmp = posixpath.join(self.path, TMP_DIR, f"{self.split}-{uuid.uuid4().hex[:12]}")
        self._rows: list[dict] = []
        self._files: list[dict] = []
        self._ids: set[str] = set()
        self._shape: tuple[int, int, int] | None = None
        self._has_gt: bool | None = None
        self._sources: set[str] = set()
        self._max_num_ids = 0
        self._max_motion_id = 0
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> ShardWriter:
        storage.check_bucket(self.fs, self.path, self.uri)
        self.check_destination()
        with storage.storage_errors(self.uri, file=self.tmp, what="creating temporary folder"):
            storage.create_dir(self.fs, self.tmp)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def check_destination(self) -> None:
        """Refuse early (before any work) when the split exists and overwrite is off."""
        if self.overwrite:
            return
        with storage.storage_errors(self.uri, file=self.final, what="checking destination"):
            taken = storage.has_files(self.fs, self.final)
        if taken:
            raise SplitExistsError(
                f"split {self.split!r} already exists; nothing was written",
                uri=self.uri,
                file=self.final,
                expected="an empty destination, or overwrite=True / --overwrite",
            )

    # -- rows -------------------------------------------------------------------------------
    def add(self, clip: Clip) -> None:
        if clip.clip_id in self._ids:
            raise DataError(f"duplicate clip_id {clip.clip_id!r}", uri=self.uri, field="clip_id")
        row = encode_clip(clip, self.frame_codec, self.mask_codec)
        shape = clip.shape
        if self._shape is None:
            self._shape = shape
            self._has_gt = clip.gt is not None
        elif shape != self._shape:
            raise ShardFormatError(
                f"clip {clip.clip_id!r} has T,H,W {shape}",
                uri=self.uri,
                field="frames",
                expected=f"every clip of a split with the same T,H,W {self._shape}",
            )
        elif (clip.gt is not None) != self._has_gt:
            raise ShardFormatError(
                f"clip {clip.clip_id!r}: GT present on some clips only",
                uri=self.uri,
                field="gt",
                expected="GT on all clips of a split or on none",
            )
        self._ids.add(clip.clip_id)
        self._sources.add(clip.source)
        self._max_num_ids = max(self._max_num_ids, int(row["num_ids"]))
        if clip.motion.size:
            self._max_motion_id = max(self._max_motion_id, int(clip.motion.max()))
        self._rows.append(row)
        if len(self._rows) >= self.clips_per_file:
            self._flush()

    def add_all(self, clips: Iterable[Clip]) -> None:
        for c in clips:
            self.add(c)

    def _flush(self) -> None:
        if not self._rows:
            return
        name = f"part-{len(self._files):05d}.parquet"
        table = pa.Table.from_pylist(self._rows, schema=SCHEMA)
        fpath = posixpath.join(self.tmp, name)
        with storage.storage_errors(self.uri, file=fpath, what="writing a part file"):
            with storage.open_output(self.fs, fpath) as out:
                pq.write_table(
                    table, out, compression=self.compression, row_group_size=len(self._rows)
                )
        ids = [r["clip_id"] for r in self._rows]
        self._files.append({"name": name, "clips": len(self._rows), "clip_ids": ids})
        self._rows = []

    # -- commit / abort ---------------------------------------------------------------------
    def manifest(self) -> dict:
        t, h, w = self._shape or (0, 0, 0)
        return {
            "schema_version": SCHEMA_VERSION,
            "split": self.split,
            "clips": sum(f["clips"] for f in self._files),
            "files": self._files,
            "num_frames": t,
            "height": h,
            "width": w,
            "has_gt": bool(self._has_gt),
            "max_num_ids": self._max_num_ids,
            "max_motion_id": self._max_motion_id,
            "sources": sorted(self._sources),
            "frame_codec": self.frame_codec,
            "mask_codec": self.mask_codec,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **self.info,
        }

    def commit(self) -> None:
        if self._closed:
            return
        self._flush()
        if not self._files:
            self.abort()
            raise DataError(f"no clips to write for split {self.split!r}", uri=self.uri)
        manifest = json.dumps(self.manifest(), indent=1).encode()
        trash = posixpath.join(self.path, TMP_DIR, f"old-{uuid.uuid4().hex[:12]}")
        with storage.storage_errors(self.uri, file=self.final, what="committing the split"):
            self.check_destination()
            # the old split (if any) stops existing first, the parts move into place (local: one
            # rename; S3: server-side copies), and the manifest is written last
            storage.replace_dir(
                self.fs, self.tmp, self.final, [f["name"] for f in self._files], trash
            )
            mpath = posixpath.join(self.final, MANIFEST)
            storage.atomic_write_bytes(self.fs, mpath, manifest, self.uri, overwrite=True)
            self._cleanup_tmp_root()
        self._closed = True

    def abort(self) -> None:
        self._closed = True
        try:
            storage.delete_dir(self.fs, self.tmp)
            self._cleanup_tmp_root()
        except OSError:
            pass

    def _cleanup_tmp_root(self) -> None:
        storage.delete_dir_if_empty(self.fs, posixpath.join(self.path, TMP_DIR))


def write_split(
    uri: str,
    split: str,
    clips: Iterable[Clip],
    settings: StorageConfig | None = None,
    *,
    clips_per_file: int = 32,
    overwrite: bool = False,
    frame_codec: str = "raw",
    mask_codec: str = "raw",
    info: dict | None = None,
) -> dict:
    """Write all ``clips`` as one split (atomically); returns the manifest."""
    writer = ShardWriter(
        uri,
        split,
        settings,
        clips_per_file=clips_per_file,
        overwrite=overwrite,
        frame_codec=frame_codec,
        mask_codec=mask_codec,
        info=dict(info or {}),
    )
    with writer:
        writer.add_all(clips)
    return writer.manifest()


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


def read_part(fs, fpath: str, uri: str, columns=None) -> pa.Table:
    """Read one part file, checking its schema version; errors name the URI and file."""
    with storage.storage_errors(uri, file=fpath, what="opening a shard"):
        try:
            pf = pq.ParquetFile(storage.open_input(fs, fpath))
        except (pa.ArrowInvalid, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ShardFormatError(
                f"not a readable Parquet file ({exc})",
                uri=uri,
                file=fpath,
                expected="a complete Parquet shard",
            ) from exc
    check_table_schema(pf.schema_arrow, fpath, uri)
    try:
        return pf.read(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardFormatError(
            f"corrupt or truncated shard ({exc})",
            uri=uri,
            file=fpath,
            expected="a complete Parquet shard",
        ) from exc


def iter_clips(
    uri: str | Split,
    split: str = "",
    settings: StorageConfig | None = None,
    limit: int | None = None,
) -> Iterator[Clip]:
    """Every clip of a split in manifest order, decoded (for inspection, tests, conversion);
    ``uri`` may be an opened :class:`Split` (``split`` and ``settings`` are then unused)."""
    opened = uri if isinstance(uri, Split) else open_split(uri, split, settings)
    uri = opened.uri
    n = 0
    for fpath in opened.part_paths:
        table = opened.read_part(fpath)
        for i, row in enumerate(table.to_pylist()):
            yield decode_row(row, file=fpath, row_index=i, uri=uri)
            n += 1
            if limit is not None and n >= limit:
                return


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def list_splits(uri: str, settings: StorageConfig | None = None) -> list[str]:
    fs, path = storage.filesystem_for(uri, settings)
    storage.check_bucket(fs, path, uri)
    with storage.storage_errors(uri, file=path, what="listing splits"):
        return [d for d in storage.list_dirs(fs, path) if not d.startswith("_")]


def validate(
    uri: str, split: str | None = None, settings: StorageConfig | None = None
) -> list[str]:
    """Check every shard (or every split when ``split`` is None): manifest, schema, each row's
    decode and shapes. Returns one message per problem, each naming the file and row."""
    problems: list[str] = []
    splits = [split] if split else list_splits(uri, settings)
    if not splits:
        return [f"uri {uri}: no splits found"]
    for sp in splits:
        try:
            opened = open_split(uri, sp, settings)
        except DataError as exc:
            problems.append(str(exc))
            continue
        fs, sdir, manifest = opened.fs, opened.path, opened.manifest
        listed = {f["name"] for f in manifest["files"]}
        with storage.storage_errors(uri, file=sdir):
            present = set(storage.list_files(fs, sdir, suffix=".parquet"))
        for extra in sorted(present - listed):
            problems.append(f"uri {uri}, file {posixpath.join(sdir, extra)}: not in the manifest")
        total = 0
        shape = (manifest.get("num_frames"), manifest.get("height"), manifest.get("width"))
        ids: set[str] = set()
        for f in manifest["files"]:
            fpath = posixpath.join(sdir, f["name"])
            try:
                table = read_part(fs, fpath, uri)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if table.num_rows != f["clips"]:
                problems.append(
                    f"uri {uri}, file {fpath}: {table.num_rows} rows (manifest says {f['clips']})"
                )
            listed_ids = f.get("clip_ids")
            if listed_ids is not None and listed_ids != table.column("clip_id").to_pylist():
                problems.append(f"uri {uri}, file {fpath}: clip ids differ from the manifest's")
            total += table.num_rows
            for i, row in enumerate(table.to_pylist()):
                try:
                    clip = decode_row(row, file=fpath, row_index=i, uri=uri)
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - report, do not stop
                    problems.append(f"uri {uri}, file {fpath}, row {i}: cannot decode ({exc!r})")
                    continue
                if clip.shape != shape:
                    problems.append(
                        f"uri {uri}, file {fpath}, row {i}: T,H,W {clip.shape} "
                        f"(expected {shape} from the manifest)"
                    )
                if clip.clip_id in ids:
                    problems.append(
                        f"uri {uri}, file {fpath}, row {i}: duplicate clip_id {clip.clip_id!r}"
                    )
                ids.add(clip.clip_id)
                if manifest.get("has_gt") and clip.gt is None:
                    problems.append(
                        f"uri {uri}, file {fpath}, row {i}: GT missing in an eval split"
                    )
        if total != manifest["clips"]:
            problems.append(
                f"uri {uri}, split {sp}: {total} clips (manifest says {manifest['clips']})"
            )
    return problems
