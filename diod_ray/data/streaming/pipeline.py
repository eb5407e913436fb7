"""Ray Data pipeline: Parquet clip shards -> decoded, augmented clips -> torch batches.

Start-up reads one small file per split, its manifest (part files, clip counts, clip ids); no
part file is opened until a Ray Data task reads it (a manifest written before clip ids were
listed falls back to reading every footer once per process, the old behaviour).
Every read is a Ray Data task of one part file (:func:`_file_tasks`: ``ray.data.range`` over
the planned reads, mapped by a generator UDF that opens the file through ``storage``), so no
process lists or opens the split's files one after another (docs/data.md, "Ray Data pipeline").

Training data is a deterministic function of (shuffle seed, epoch, pass, position, rank)
(docs/performance.md, "Deterministic runs"):

- :class:`TrainStream`: each rank builds ONE Dataset for the rest of its run (all remaining
  epochs and passes, planned from the manifest's clip counts by
  :func:`diod_ray.data.streaming.order.epoch_plan`), when its worker starts (after the checkpoint is
  restored, so a resumed run plans from its step) and never again; the pipeline stays warm
  across epoch boundaries. It runs with ``preserve_order=True``, so the clip stream does not
  depend on task timing.
- The map UDF draws each clip's window, crop, flip and colour from a generator keyed by
  (seed, epoch, pass, clip_id) (:func:`clip_rng`), never by batch composition, so it does not
  matter which Ray Data task handles a clip.
- On the worker a seeded shuffle buffer (``data.shuffle_buffer_clips``; seed from (seed, epoch,
  pass, rank)) mixes clips across files, restarted at every pass, so a resumed run replays the
  same stream: whole passes before the resume point are not read, and the batches of the
  resumed pass before it are replayed, not yielded.

Ray Data's ``local_shuffle_buffer_size`` is not used: its buffer runs across the whole iteration
(no restart at a pass, so no exact resume mid-run) and it yields short batches mid-stream
(ray-project/ray#66085). Ray Train's ``streaming_split`` is not used for training either: its
dataset is built before the workers restore their checkpoint, so it cannot start where a resumed
run stands; the decision and what it costs are in docs/performance.md.

Evaluation datasets are split by Train across the ranks (:class:`EvalSplit`, ``equal=False`` so
no clip is dropped, in stored order): each clip is read and decoded once per pass. Their blocks
are exactly ``run.eval_batch_size`` clips (``repartition(strict=True)``), so every rank's batches
are the batches one process would see and the metric counters, summed over ranks, are its.

The map emits uint8 frames and masks no wider than the split's ids need (uint8 below 256) to keep
object-store traffic low; batches are normalised on the training device.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.train
import torch

from diod_ray import storage
from diod_ray.config import Config, to_dict
from diod_ray.data.errors import DataError, ShardFormatError
from diod_ray.data.shards.rows import check_table_schema, decode_row
from diod_ray.data.shards.store import Split, open_split, read_part
from diod_ray.data.streaming.augment import augment_clip, random_window, resize_frames
from diod_ray.data.streaming.order import (
    BUFFER,
    FileRead,
    PassPlan,
    TooFewClips,
    clip_rng,
    data_seed,
    epoch_plan,
    rng,
    shuffle_buffer,
)

# clips per map output: small keeps memory flat at 480x968 and streams well
MAP_BATCH_CLIPS = 4


def mask_dtype(max_id: int | None) -> np.dtype:
    """The narrowest dtype of a split's mask ids: uint8 below 256, else uint16 (unknown: uint16,
    a manifest written before ``max_motion_id``)."""
    return np.dtype(np.uint8) if max_id is not None and int(max_id) < 256 else np.dtype(np.uint16)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


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


class EvalSplit(ray.train.DataConfig):
    """Train's DataConfig for the eval datasets: each one split over the workers by
    ``streaming_split(equal=False)`` (``equal=True``, Train's default, drops up to W-1 clips to
    even the shares), with the workers' nodes as locality hints. The datasets run with
    ``preserve_order`` (set in their own DataContext), under which Ray Data ignores the hints
    and hands the blocks out in order to the rank with the fewest rows so far: the shares are a
    function of the block sizes, the same in every run."""

    def __init__(self) -> None:
        super().__init__(datasets_to_split="all")

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        out: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            if ds.name is None:
                ds.set_name(name)
            parts = ds.streaming_split(world_size, equal=False, locality_hints=worker_node_ids)
            for i, part in enumerate(parts):
                out[i][name] = part
        return out


# ------------------------------------------------------------------------------------------
# Iterating on the worker
# ------------------------------------------------------------------------------------------


def per_worker_batch_size(cfg: Config, world: int | None = None) -> int:
    """Clips per batch on each worker. ``data.batch_size`` is the GLOBAL batch of one optimiser
    step (the paper's 8 clips, whatever the number of GPUs), split evenly over the workers."""
    world = max(1, cfg.run.num_workers if world is None else world)
    if cfg.data.batch_size % world:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} (the global batch) must be divisible by "
            f"{world} workers (run.num_workers={cfg.run.num_workers})"
        )
    return cfg.data.batch_size // world


def normalise_frames(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B,T,H,W,3] -> float32 [B,T,3,H,W] in [-1, 1]: (x/255 - 0.5) / 0.5."""
    return x.permute(0, 1, 4, 2, 3).float().div_(127.5).sub_(1.0)


def _collate(clips: list[dict], device: torch.device) -> dict[str, Any]:
    """Clips -> ``weak``/``strong`` float32 [B,T,3,H,W] normalised, ``motion`` int64
    [B,T,H,W] on ``device``, ``clip_id`` list[str]."""

    def stack(k: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([c[k] for c in clips]))

    nb = device.type == "cuda"
    return {
        "weak": normalise_frames(stack("weak").to(device, non_blocking=nb)),
        "strong": normalise_frames(stack("strong").to(device, non_blocking=nb)),
        "motion": stack("motion").to(device, non_blocking=nb).long(),
        "clip_id": [str(c["clip_id"]) for c in clips],
    }


class TrainStream:
    """Rank ``rank``'s training batches from epoch ``epoch`` (batch ``skip`` on) to the end of
    epoch ``end_epoch - 1``, from ONE ordered Dataset built here (no per-epoch dataset, no
    per-epoch start-up). :meth:`epoch` yields one epoch's batches; epochs are taken in order."""

    def __init__(
        self,
        cfg: Config,
        steps: int,
        *,
        epoch: int,
        end_epoch: int,
        rank: int = 0,
        world: int = 1,
        skip: int = 0,
        readers: int | None = None,
    ) -> None:
        self.cfg, self.steps, self.rank, self.world = cfg, steps, rank, world
        self.bs = per_worker_batch_size(cfg, world)
        self.seed = data_seed(cfg)
        index = train_index(cfg)
        self.plans: dict[int, list[PassPlan]] = {}
        tasks: list[tuple[int, int, FileRead]] = []
        for e in range(epoch, max(end_epoch, epoch + 1)):
            try:
                plan = epoch_plan(
                    index.counts,
                    self.seed,
                    e,
                    steps,
                    self.bs,
                    cfg.data.shuffle_buffer_clips,
                    rank,
                    world,
                    skip if e == epoch else 0,
                )
            except TooFewClips as exc:
                raise DataError(
                    f"the training shard of rank {rank} holds fewer clips than one batch "
                    f"({self.bs} per worker; {exc})",
                    uri=cfg.data.uri,
                    expected="more training clips, or a smaller data.batch_size",
                ) from exc
            self.plans[e] = plan
            tasks += [(e, p.pass_, r) for p in plan for r in p.reads]
        self.next = (epoch, skip)  # the (epoch, batch) the stream stands at
        self.dataset = train_dataset(cfg, tasks, readers)
        self._clips = self._iter_clips()

    def _iter_clips(self) -> Iterator[dict[str, Any]]:
        """One dict of numpy arrays per clip, in the Dataset's (preserved) order."""
        keys = ("weak", "strong", "motion", "clip_id", "epoch", "pass")
        for b in self.dataset.iter_batches(
            batch_size=None, batch_format="numpy", prefetch_batches=self.cfg.data.prefetch_batches
        ):
            for i in range(len(b["clip_id"])):
                yield {k: b[k][i] for k in keys}

    def epoch(self, epoch: int, device: Any = "cpu") -> Iterator[dict[str, Any]]:
        """Batches of ``epoch`` from where the stream stands: ``weak``/``strong`` float32
        [B,T,3,H,W], ``motion`` int64 [B,T,H,W] on ``device``, ``clip_id`` list[str]."""
        if self.next[0] != epoch or epoch not in self.plans:
            raise ValueError(f"the stream stands at epoch {self.next[0]}, not {epoch}")
        device = torch.device(device) if not isinstance(device, torch.device) else device
        done, finished = self.next[1], False
        try:
            yield from self._epoch(epoch, done, device)
            finished = True
        finally:
            # the last epoch, or an epoch left half-way (the stream can no longer continue):
            # the Dataset's iteration is shut down now, not when the process exits
            if not finished or epoch + 1 not in self.plans:
                self.close()

    def close(self) -> None:
        self.next = (-1, -1)
        self._clips.close()

    def _epoch(self, epoch: int, done: int, device: torch.device) -> Iterator[dict[str, Any]]:
        for plan in self.plans[epoch]:
            pass_clips = itertools.islice(self._clips, plan.clips)
            gen = rng(self.seed, BUFFER, epoch, plan.pass_, self.rank)
            got, batch = 0, []
            for clip in shuffle_buffer(pass_clips, self.cfg.data.shuffle_buffer_clips, gen):
                if (int(clip["epoch"]), int(clip["pass"])) != (epoch, plan.pass_):
                    raise RuntimeError(f"stream out of step at epoch {epoch} pass {plan.pass_}")
                batch.append(clip)
                if len(batch) < self.bs:
                    continue
                if got >= plan.skip:
                    yield _collate(batch, device)
                    done += 1
                    self.next = (epoch, done)
                batch, got = [], got + 1
                if got >= plan.batches:
                    break
            for _ in pass_clips:  # clips read for the buffer but not needed by a batch
                pass
        self.next = (epoch + 1, 0)


_STREAM: dict[str, Any] = {}


def train_batches(
    cfg: Config,
    epoch: int,
    steps: int,
    device: Any = "cpu",
    *,
    rank: int = 0,
    world: int = 1,
    skip: int = 0,
    end_epoch: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Batches ``skip`` .. ``steps``-1 of ``epoch`` on rank ``rank`` of ``world``, from this
    process's :class:`TrainStream`: built on the first call (up to ``end_epoch``) and reused while
    each call asks for where it stands (the next epoch, from batch 0); any other call (a resumed
    run, another config) builds a new one there."""
    key = repr((to_dict(cfg), steps, rank, world))
    s = _STREAM.get("stream")
    if s is None or _STREAM.get("key") != key or s.next != (epoch, skip):
        if s is not None:
            s.close()
        end = epoch + 1 if end_epoch is None else end_epoch
        s = TrainStream(cfg, steps, epoch=epoch, end_epoch=end, rank=rank, world=world, skip=skip)
        _STREAM.update(stream=s, key=key)
    return s.epoch(epoch, device)


def iter_train_batches(
    cfg: Config,
    epoch: int,
    steps: int,
    device: Any = "cpu",
    *,
    rank: int = 0,
    world: int = 1,
    skip: int = 0,
) -> Iterator[dict[str, Any]]:
    """Batches ``skip`` .. ``steps``-1 of one epoch on rank ``rank`` of ``world`` from a stream of
    that epoch alone (tests, benchmarks; training uses :func:`train_batches`).

    One pass over the rank's clips rarely equals ``steps`` batches: further passes (pass 1, 2,
    ... of the same epoch, each freshly permuted and augmented) follow until ``steps`` batches
    are out; a pass's ragged tail is dropped, so every rank yields the same count. Skipping
    replays the skipped batches of the pass it lands in (whole passes before it are not read),
    so batch k of a resumed epoch is batch k of the uninterrupted one."""
    s = TrainStream(cfg, steps, epoch=epoch, end_epoch=epoch + 1, rank=rank, world=world, skip=skip)
    return s.epoch(epoch, device)


def _tensor(a: np.ndarray, dtype) -> torch.Tensor:
    """numpy -> torch without the read-only-array warning (batches from Ray are read-only)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def iter_eval_batches(
    shard_or_dataset: Any, cfg: Config, batch_size: int, device: Any = "cpu"
) -> Iterator[dict[str, Any]]:
    """Every clip of an eval Dataset / shard once, in its (preserved) order: ``frames`` float32
    [B,T,3,H,W] normalised, ``gt`` int64 [B,T,H,W], ``gt_moving`` bool [B,T,G+1],
    ``moving_known`` bool [B], ``motion`` int64 [B,T,H,W], ``clip_id`` list[str]. The last
    batch may be smaller (of a shard of a split Dataset: its blocks, see :func:`eval_dataset`)."""
    device = torch.device(device) if not isinstance(device, torch.device) else device
    for b in shard_or_dataset.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        drop_last=False,
        prefetch_batches=cfg.data.prefetch_batches,
    ):
        yield {
            "frames": normalise_frames(_tensor(b["frames"], np.uint8).to(device)),
            "gt": _tensor(b["gt"], np.int64).to(device),
            "gt_moving": _tensor(b["gt_moving"], np.bool_).to(device),
            "moving_known": _tensor(b["moving_known"], np.bool_).to(device),
            "motion": _tensor(b["motion"], np.int64).to(device),
            "clip_id": [str(c) for c in b["clip_id"]],
        }
