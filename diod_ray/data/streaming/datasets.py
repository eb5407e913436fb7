"""Ray Data Datasets of clip shards: part files -> decoded clips, augmented for training.

Start-up reads one small file per split, its manifest (part files, clip counts, clip ids); no
part file is opened until a Ray Data task reads it (a manifest written before clip ids were
listed falls back to reading every footer once per process, the old behaviour).
Every read is a Ray Data task of one part file (:func:`_file_tasks`: ``ray.data.range`` over
the planned reads, mapped by a generator UDF that opens the file through ``storage``), so no
process lists or opens the split's files one after another (docs/data.md, "Ray Data pipeline").

The training Dataset (:func:`train_dataset`) runs the reads of a plan
(:func:`diod_ray.data.streaming.order.epoch_plan`, made by
:class:`diod_ray.data.streaming.batches.TrainStream`) with ``preserve_order=True``, so the clip
stream does not depend on task timing. The map UDF draws each clip's window, crop, flip and
colour from a generator keyed by (seed, epoch, pass, clip_id) (:func:`clip_rng`), never by batch
composition, so it does not matter which Ray Data task handles a clip.

Evaluation Datasets (:func:`eval_dataset`) are read in stored order, each clip decoded once per
pass; their blocks are exactly ``run.eval_batch_size`` clips (``repartition(strict=True)``), so
that a split over the ranks (:class:`diod_ray.data.streaming.eval_split.EvalSplit`) hands every
rank the batches one process would see.

The map emits uint8 frames and masks no wider than the split's ids need (uint8 below 256) to keep
object-store traffic low; batches are normalised on the training device
(:mod:`diod_ray.data.streaming.batches`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from diod_ray import storage
from diod_ray.config import Config
from diod_ray.data.errors import DataError, ShardFormatError
from diod_ray.data.shards.rows import check_table_schema, decode_row
from diod_ray.data.shards.store import Split, open_split, read_part
from diod_ray.data.streaming.augment import augment_clip, random_window, resize_frames
from diod_ray.data.streaming.order import FileRead, clip_rng, data_seed

# clips per map output: small keeps memory flat at 480x968 and streams well
MAP_BATCH_CLIPS = 4


def mask_dtype(max_id: int | None) -> np.dtype:
    """The narrowest dtype of a split's mask ids: uint8 below 256, else uint16 (unknown: uint16,
    a manifest written before ``max_motion_id``)."""
    return np.dtype(np.uint8) if max_id is not None and int(max_id) < 256 else np.dtype(np.uint16)


def _check_parts(cfg: Config, split: str, clip_ids: bool = False, opened: Split | None = None):
    """Manifest + every part file's footer (schema version, readability), one file after another.
    Only for a manifest written before clip ids were listed in it (:func:`train_index`) and for
    checks; the pipeline itself checks each file in the task that reads it.
    Returns (filesystem, paths, manifest, clip ids per file or None)."""
    opened = opened or open_split(cfg.data.uri, split, cfg.storage)
    uri, fs, paths, manifest = opened.uri, opened.fs, opened.part_paths, opened.manifest
    ids: list[list[str]] = []
    for p in paths:
        with storage.storage_errors(uri, file=p, what="opening a shard"):
            try:
                with fs.open_input_file(p) as f:
                    schema = pq.read_schema(f)
                    check_table_schema(schema, p, uri)
                    if clip_ids:
                        col = pq.read_table(f, columns=["clip_id"]).column("clip_id")
                        ids.append([str(c) for c in col.to_pylist()])
            except (pa.ArrowInvalid, pa.ArrowException) as exc:
                if isinstance(exc, OSError):
                    raise
                raise ShardFormatError(
                    f"not a readable Parquet file ({exc})",
                    uri=uri,
                    file=p,
                    expected="a complete Parquet shard",
                ) from exc
    return fs, paths, manifest, (ids if clip_ids else None)


@dataclass(frozen=True)
class TrainIndex:
    """The train split's part files, their clip counts and clip ids, in stored order (from the
    manifest; from the footers once per process for a manifest without clip ids)."""

    uri: str
    fs: Any
    paths: tuple[str, ...]
    clip_ids: tuple[tuple[str, ...], ...]
    num_frames: int  # stored frames per clip (manifest)
    motion_dtype: np.dtype
    from_footers: bool = False  # True: an old manifest, the footers were read

    @property
    def counts(self) -> list[int]:
        return [len(i) for i in self.clip_ids]


_INDEX: dict[tuple[str, ...], TrainIndex] = {}


def train_index(cfg: Config) -> TrainIndex:
    """One request (the manifest) for a split written with clip ids in its manifest; for an older
    one, every footer and clip_id column once per process (cached)."""
    opened = open_split(cfg.data.uri, cfg.data.train_split, cfg.storage)
    m = opened.manifest
    t = int(m.get("num_frames", 0))
    motion = mask_dtype(m.get("max_motion_id"))
    ids = opened.file_clip_ids()
    if ids is not None:
        paths = tuple(opened.part_paths)
        return TrainIndex(opened.uri, opened.fs, paths, tuple(map(tuple, ids)), t, motion)
    # keyed by the manifest's identity too: a split rewritten in place is read again
    key = (cfg.data.uri, cfg.data.train_split, cfg.storage.endpoint_url, repr(sorted(m.items())))
    if key not in _INDEX:
        fs, paths, _, ids = _check_parts(cfg, cfg.data.train_split, True, opened)
        clip_ids = tuple(tuple(i) for i in ids)
        _INDEX[key] = TrainIndex(opened.uri, fs, tuple(paths), clip_ids, t, motion, True)
    return _INDEX[key]


def _decode_rows(table: pa.Table, uri: str):
    """Decode every row of a pyarrow batch; errors name the URI, file and clip."""
    rows = table.to_pylist()
    for row in rows:
        try:
            yield decode_row(row, file=row.get("path"), uri=uri)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decode failure becomes one clear error
            raise ShardFormatError(
                f"clip {row.get('clip_id')!r}: cannot decode ({exc!r})",
                uri=uri,
                file=row.get("path"),
            ) from exc


def _colour(frames: np.ndarray, order: str) -> np.ndarray:
    """Stored RGB -> the configured channel order (``bgr`` reproduces the reference)."""
    return np.ascontiguousarray(frames[..., ::-1]) if order == "bgr" else frames


def _train_map(
    table: pa.Table,
    cfg: Config,
    epoch: int = 0,
    pass_: int = 0,
    out_frames: int = 0,
    motion_dtype: Any = np.uint16,
) -> dict[str, np.ndarray]:
    """Rows -> ``weak``/``strong`` uint8 [b,T,H,W,3], ``motion`` [b,T,H,W] (``motion_dtype``),
    ``clip_id`` str [b] (``out_frames`` = T of an empty table)."""
    d = cfg.data
    out_hw = (d.height, d.width)
    seed = data_seed(cfg)
    weak, strong, motion, ids = [], [], [], []
    for c in _decode_rows(table, d.uri):
        rng_ = clip_rng(seed, epoch, pass_, c.clip_id)
        win = random_window(rng_, c.frames.shape[0], d.clip_len)
        frames = _colour(c.frames[win], d.colour_order)
        w, s, m = augment_clip(frames, c.motion[win].astype(np.uint16), d.augment, rng_, out_hw)
        weak.append(w)
        strong.append(s)
        motion.append(m.astype(motion_dtype))
        ids.append(c.clip_id)
    if not ids:
        t, h, w = out_frames, d.height, d.width
        return {
            "weak": np.zeros((0, t, h, w, 3), np.uint8),
            "strong": np.zeros((0, t, h, w, 3), np.uint8),
            "motion": np.zeros((0, t, h, w), motion_dtype),
            "clip_id": np.array([], dtype=object),
        }
    return {
        "weak": np.stack(weak),
        "strong": np.stack(strong),
        "motion": np.stack(motion),
        "clip_id": np.array(ids, dtype=object),
    }


def _eval_map(
    table: pa.Table, cfg: Config, width: int, gt_dtype: Any = np.int32, motion_dtype: Any = np.int32
) -> dict[str, np.ndarray]:
    """Rows (no augmentation) -> frames uint8, gt / motion masks (``gt_dtype`` /
    ``motion_dtype``: the split's narrowest), gt_moving bool padded to ``width`` = max GT id of
    the split + 1, ``moving_known`` bool [b] (False where the clip was converted without moving
    flags: its objects are then neither static nor moving), clip_id str."""
    d = cfg.data
    frames, gt, motion, moving, known, ids = [], [], [], [], [], []
    for c in _decode_rows(table, d.uri):
        if c.gt is None:
            raise ShardFormatError(
                f"clip {c.clip_id!r} has no GT; evaluation needs an eval split",
                uri=d.uri,
                field="gt",
                expected="a split converted with GT (test split)",
            )
        t, h, w = c.shape
        f = _colour(c.frames, d.colour_order)
        g, m = c.gt.astype(np.uint16), c.motion.astype(np.uint16)
        if (h, w) != (d.height, d.width):
            f = resize_frames(f, d.height, d.width, nearest=False)
            g = resize_frames(g, d.height, d.width, nearest=True)
            m = resize_frames(m, d.height, d.width, nearest=True)
        mv = np.zeros((t, width), bool)
        if c.gt_moving is not None:
            mv[:, : c.gt_moving.shape[1]] = c.gt_moving[:, :width]
        frames.append(f)
        gt.append(g.astype(gt_dtype))
        motion.append(m.astype(motion_dtype))
        moving.append(mv)
        known.append(c.gt_moving is not None)
        ids.append(c.clip_id)
    return {
        "frames": np.stack(frames),
        "gt": np.stack(gt),
        "motion": np.stack(motion),
        "gt_moving": np.stack(moving),
        "moving_known": np.array(known, dtype=bool),
        "clip_id": np.array(ids, dtype=object),
    }


def _chunks(table: pa.Table) -> Iterator[pa.Table]:
    for i in range(0, table.num_rows, MAP_BATCH_CLIPS):
        yield table.slice(i, MAP_BATCH_CLIPS)


def _read_train_files(
    batch: dict[str, np.ndarray],
    cfg: Config,
    fs: Any,
    paths: tuple[str, ...],
    tasks: tuple[tuple[int, int, FileRead], ...],
    out_frames: int,
    motion_dtype: Any,
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches UDF over ``ray.data.range``: task ``id`` = (epoch, pass, read); opens the
    part file (its schema checked, errors naming it), keeps the read's rows and yields them
    augmented, MAP_BATCH_CLIPS at a time, tagged with their epoch and pass."""
    for k in batch["id"]:
        epoch, pass_, r = tasks[int(k)]
        table = read_part(fs, paths[r.file], cfg.data.uri)
        rows = range(r.first, table.num_rows, r.step)[: r.count]
        if r.step != 1 or r.first or len(rows) != table.num_rows:
            table = table.take(pa.array(list(rows), pa.int64()))
        for part in _chunks(table):
            out = _train_map(part, cfg, epoch, pass_, out_frames, motion_dtype)
            n = len(out["clip_id"])
            out["epoch"] = np.full(n, epoch, np.int32)
            out["pass"] = np.full(n, pass_, np.int32)
            yield out


def _read_eval_files(
    batch: dict[str, np.ndarray],
    cfg: Config,
    fs: Any,
    paths: tuple[str, ...],
    width: int,
    gt_dtype: Any,
    motion_dtype: Any,
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches UDF over ``ray.data.range``: part file ``id`` decoded, MAP_BATCH_CLIPS clips
    at a time."""
    for k in batch["id"]:
        table = read_part(fs, paths[int(k)], cfg.data.uri)
        for part in _chunks(table):
            yield _eval_map(part, cfg, width, gt_dtype, motion_dtype)


def _file_tasks(n: int, udf, fn_kwargs: dict, readers: int | None = None) -> ray.data.Dataset:
    """``n`` Ray Data tasks, task ``k`` running ``udf`` on ``{"id": [k]}``, outputs in task order
    (``preserve_order`` in the Dataset's own DataContext); at most ``readers`` at once (None:
    as many as Ray Data schedules)."""
    ds = ray.data.range(n, override_num_blocks=max(1, n))
    ds.context.execution_options.preserve_order = True
    pool = ray.data.TaskPoolStrategy(size=readers) if readers else None
    return ds.map_batches(
        udf, fn_kwargs=fn_kwargs, batch_size=1, batch_format="numpy", compute=pool
    )


def train_dataset(
    cfg: Config, tasks: list[tuple[int, int, FileRead]], readers: int | None = None
) -> ray.data.Dataset:
    """The augmented clips of ``tasks`` ((epoch, pass, read), in stream order), as one lazy
    ordered Dataset; every augmentation draw is fixed by (data seed, epoch, pass, clip id)."""
    index = train_index(cfg)
    t = index.num_frames
    out_frames = t if cfg.data.clip_len <= 0 or cfg.data.clip_len >= t else cfg.data.clip_len
    kwargs = {
        "cfg": cfg,
        "fs": index.fs,
        "paths": index.paths,
        "tasks": tuple(tasks),
        "out_frames": out_frames,
        "motion_dtype": index.motion_dtype,
    }
    return _file_tasks(len(tasks), _read_train_files, kwargs, readers)


def eval_dataset(
    cfg: Config, split: str | None = None, *, batch_size: int = 0, limit: int = 0
) -> ray.data.Dataset:
    """An eval split (default ``data.test_split``) in stored order, decoded without augmentation
    (ordered, so batches and metric sums are the same in every run); only its first ``limit``
    clips when > 0. ``batch_size`` > 0: blocks of exactly that many clips (the last one shorter),
    so that a split of the Dataset hands every rank whole batches, the batches one process sees."""
    split = split or cfg.data.test_split
    opened = open_split(cfg.data.uri, split, cfg.storage)
    m = opened.manifest
    kwargs = {
        "cfg": cfg,
        "fs": opened.fs,
        "paths": tuple(opened.part_paths),
        "width": int(m.get("max_num_ids", 0)) + 1,
        "gt_dtype": mask_dtype(m.get("max_num_ids")),
        "motion_dtype": mask_dtype(m.get("max_motion_id")),
    }
    ds = _file_tasks(len(opened.part_paths), _read_eval_files, kwargs)
    if limit > 0:
        ds = ds.limit(limit)
    if batch_size > 0:
        ds = ds.repartition(target_num_rows_per_block=batch_size, strict=True)
    return ds
