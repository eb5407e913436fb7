"""Clip shards: ``<uri>/<split>/part-NNNNN.parquet`` plus ``<uri>/<split>/_manifest.json``.

Writing is atomic per split: part files go to ``<uri>/_tmp/<split>-<random>/`` and are moved to
``<uri>/<split>/`` only when every clip is written (local: one directory rename; S3: server-side
copy of each object). The manifest (file list, clip counts, schema version) is written last, so a
split "exists" exactly when its manifest does. Nothing existing is replaced unless ``overwrite``.
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
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from diod_ray import storage
from diod_ray.data.errors import (
    DataError,
    ShardFormatError,
    SplitExistsError,
    SplitMissingError,
)
from diod_ray.data.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    Clip,
    check_table_schema,
    decode_row,
    encode_clip,
)

if TYPE_CHECKING:
    from diod_ray.config import DataConfig

MANIFEST = "_manifest.json"
TMP_DIR = "_tmp"


def split_path(path: str, split: str) -> str:
    return posixpath.join(path, split)


# ------------------------------------------------------------------------------------------
# Manifest, existence, counts
# ------------------------------------------------------------------------------------------


def read_manifest(uri: str, split: str, data_cfg: DataConfig | None = None) -> dict:
    fs, path = storage.filesystem_for(uri, data_cfg)
    storage.check_bucket(fs, path, uri)
    mpath = posixpath.join(path, split, MANIFEST)
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
    return manifest


def split_exists(uri: str, split: str, data_cfg: DataConfig | None = None) -> bool:
    """True when ``<uri>/<split>/_manifest.json`` exists (the split was written completely)."""
    fs, path = storage.filesystem_for(uri, data_cfg)
    storage.check_bucket(fs, path, uri)
    mpath = posixpath.join(path, split, MANIFEST)
    with storage.storage_errors(uri, file=mpath, what=f"checking split {split!r}"):
        return storage.exists(fs, mpath)


def count_clips(uri: str, split: str, data_cfg: DataConfig | None = None) -> int:
    return int(read_manifest(uri, split, data_cfg)["clips"])


def part_files(uri: str, split: str, data_cfg: DataConfig | None = None) -> list[str]:
    """Filesystem paths of the split's part files, in manifest order."""
    fs, path = storage.filesystem_for(uri, data_cfg)
    manifest = read_manifest(uri, split, data_cfg)
    return [posixpath.join(path, split, f["name"]) for f in manifest["files"]]


def part_uris(uri: str, split: str, data_cfg: DataConfig | None = None) -> list[str]:
    """Like :func:`part_files` but as URIs (``s3://...`` or absolute local paths)."""
    files = part_files(uri, split, data_cfg)
    return [f"s3://{f}" for f in files] if storage.is_s3(uri) else files


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
    data_cfg: DataConfig | None = None
    clips_per_file: int = 32
    overwrite: bool = False
    frame_codec: str = "raw"
    mask_codec: str = "raw"
    compression: str = "zstd"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clips_per_file < 1:
            raise ValueError("clips_per_file must be >= 1")
        self.fs, self.path = storage.filesystem_for(self.uri, self.data_cfg)
        self.final = posixpath.join(self.path, self.split)
        self.tmp = posixpath.join(self.path, TMP_DIR, f"{self.split}-{uuid.uuid4().hex[:12]}")
        self._rows: list[dict] = []
        self._files: list[dict] = []
        self._ids: set[str] = set()
        self._shape: tuple[int, int, int] | None = None
        self._has_gt: bool | None = None
        self._sources: set[str] = set()
        self._max_num_ids = 0
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> ShardWriter:
        storage.check_bucket(self.fs, self.path, self.uri)
        self.check_destination()
        with storage.storage_errors(self.uri, file=self.tmp, what="creating temporary folder"):
            self.fs.create_dir(self.tmp, recursive=True)
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
            info = self.fs.get_file_info(self.final)
            taken = info.type != pafs.FileType.NotFound
            if taken and info.type == pafs.FileType.Directory:
                taken = bool(self.fs.get_file_info(pafs.FileSelector(self.final, recursive=True)))
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
            with self.fs.open_output_stream(fpath) as out:
                pq.write_table(
                    table, out, compression=self.compression, row_group_size=len(self._rows)
                )
        self._files.append({"name": name, "clips": len(self._rows)})
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
        fs = self.fs
        with storage.storage_errors(self.uri, file=self.final, what="committing the split"):
            self.check_destination()
            if isinstance(fs, pafs.LocalFileSystem):
                storage.atomic_write_bytes(
                    fs, posixpath.join(self.tmp, MANIFEST), manifest, self.uri
                )
                trash = None
                if storage.exists(fs, self.final):
                    trash = posixpath.join(self.path, TMP_DIR, f"old-{uuid.uuid4().hex[:12]}")
                    fs.move(self.final, trash)
                fs.move(self.tmp, self.final)  # one rename: the split appears complete
                if trash:
                    fs.delete_dir(trash)
            else:
                # S3 has no rename: drop the old split's manifest first (so it stops "existing"),
                # copy each part server-side, write the manifest last, then clean up
                if storage.exists(fs, self.final):
                    fs.delete_dir_contents(self.final, missing_dir_ok=True)
                for f in self._files:
                    fs.copy_file(
                        posixpath.join(self.tmp, f["name"]), posixpath.join(self.final, f["name"])
                    )
                with fs.open_output_stream(posixpath.join(self.final, MANIFEST)) as out:
                    out.write(manifest)
                fs.delete_dir(self.tmp)
            self._cleanup_tmp_root()
        self._closed = True

    def abort(self) -> None:
        self._closed = True
        try:
            if storage.exists(self.fs, self.tmp):
                self.fs.delete_dir(self.tmp)
            self._cleanup_tmp_root()
        except OSError:
            pass

    def _cleanup_tmp_root(self) -> None:
        root = posixpath.join(self.path, TMP_DIR)
        try:
            info = self.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
            if not info and storage.exists(self.fs, root):
                self.fs.delete_dir(root)
        except OSError:
            pass


def write_split(
    uri: str,
    split: str,
    clips: Iterable[Clip],
    data_cfg: DataConfig | None = None,
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
        data_cfg,
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


def read_part(fs: pafs.FileSystem, fpath: str, uri: str, columns=None) -> pa.Table:
    """Read one part file, checking its schema version; errors name the URI and file."""
    with storage.storage_errors(uri, file=fpath, what="opening a shard"):
        try:
            pf = pq.ParquetFile(fs.open_input_file(fpath))
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
    uri: str, split: str, data_cfg: DataConfig | None = None, limit: int | None = None
) -> Iterator[Clip]:
    """Every clip of a split in manifest order, decoded (for inspection, tests, conversion)."""
    fs, _ = storage.filesystem_for(uri, data_cfg)
    n = 0
    for fpath in part_files(uri, split, data_cfg):
        table = read_part(fs, fpath, uri)
        for i, row in enumerate(table.to_pylist()):
            yield decode_row(row, file=fpath, row_index=i, uri=uri)
            n += 1
            if limit is not None and n >= limit:
                return


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def list_splits(uri: str, data_cfg: DataConfig | None = None) -> list[str]:
    fs, path = storage.filesystem_for(uri, data_cfg)
    storage.check_bucket(fs, path, uri)
    with storage.storage_errors(uri, file=path, what="listing splits"):
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(
        posixpath.basename(i.path)
        for i in infos
        if i.type == pafs.FileType.Directory and not posixpath.basename(i.path).startswith("_")
    )


def validate(uri: str, split: str | None = None, data_cfg: DataConfig | None = None) -> list[str]:
    """Check every shard (or every split when ``split`` is None): manifest, schema, each row's
    decode and shapes. Returns one message per problem, each naming the file and row."""
    problems: list[str] = []
    splits = [split] if split else list_splits(uri, data_cfg)
    if not splits:
        return [f"uri {uri}: no splits found"]
    fs, path = storage.filesystem_for(uri, data_cfg)
    for sp in splits:
        try:
            manifest = read_manifest(uri, sp, data_cfg)
        except DataError as exc:
            problems.append(str(exc))
            continue
        listed = {f["name"] for f in manifest["files"]}
        sdir = posixpath.join(path, sp)
        with storage.storage_errors(uri, file=sdir):
            present = {
                posixpath.basename(i.path)
                for i in fs.get_file_info(pafs.FileSelector(sdir))
                if i.type == pafs.FileType.File and i.path.endswith(".parquet")
            }
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
