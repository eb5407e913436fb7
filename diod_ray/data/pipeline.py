"""Ray Data pipeline: Parquet clip shards -> decoded, augmented clips -> torch batches.

Training data is a deterministic function of (shuffle seed, epoch, pass, position, rank)
(docs/performance.md, "Deterministic runs"):

- Every epoch (and every extra pass a rank needs to fill the epoch) builds its own Dataset:
  :func:`epoch_files` permutes the part files by (seed, epoch, pass) and deals them to the ranks
  (rank r reads files r, r+W, ...; with fewer files than ranks every rank reads all files and
  keeps every W-th clip). ``read_parquet`` runs with ``preserve_order=True`` in the Dataset's own
  DataContext, so the clip stream does not depend on task timing.
- The map UDF draws each clip's window, crop, flip and colour from a generator keyed by
  (seed, epoch, pass, clip_id) (:func:`clip_rng`), never by batch composition, so it does not
  matter which Ray Data task handles a clip.
- :func:`iter_train_batches` mixes clips across files with a seeded shuffle buffer on the
  worker (``data.shuffle_buffer_clips``; seed from (seed, epoch, pass, rank)) and can skip the
  batches of an epoch already consumed, so a resumed run continues the same stream.

``data.shuffle_seed`` = -1 (default) derives the seed from ``run.seed`` (:func:`data_seed`).
Ray Data's ``local_shuffle_buffer_size`` is not used: its batches depend on block boundaries
and it yields short batches mid-stream (ray-project/ray#66085).

The map emits uint8 views to keep object-store traffic 4x below float; batches are normalised
on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from diod_ray import storage
from diod_ray.config import Config
from diod_ray.data.augment import augment_clip, random_window, resize_frames
from diod_ray.data.errors import DataError, ShardFormatError
from diod_ray.data.order import BUFFER, clip_rng, data_seed, epoch_files, rng, shuffle_buffer
from diod_ray.data.schema import check_table_schema, decode_row
from diod_ray.data.shards import Split, open_split

# clips per map_batches call: small keeps memory flat at 480x968 and streams well
MAP_BATCH_CLIPS = 4


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


def _check_parts(cfg: Config, split: str, clip_ids: bool = False, opened: Split | None = None):
    """Manifest + every part file's footer (schema version, readability) checked up front, so a
    bad shard fails in the driver with its file named instead of deep inside a Ray task.
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
    """The train split's part files and their clip ids, in stored order (read once per process)."""

    fs: Any
    paths: tuple[str, ...]
    clip_ids: tuple[tuple[str, ...], ...]
    num_frames: int  # stored frames per clip (manifest)


_INDEX: dict[tuple[str, ...], TrainIndex] = {}


def train_index(cfg: Config) -> TrainIndex:
    # keyed by the manifest's identity too: a split rewritten in place is read again
    opened = open_split(cfg.data.uri, cfg.data.train_split, cfg.storage)
    m = opened.manifest
    key = (
        cfg.data.uri,
        cfg.data.train_split,
        cfg.storage.endpoint_url,
        repr(m.get("files")),
        str(m.get("created")),
    )
    if key not in _INDEX:
        fs, paths, manifest, ids = _check_parts(cfg, cfg.data.train_split, True, opened)
        t = int(manifest.get("num_frames", 0))
        _INDEX[key] = TrainIndex(fs, tuple(paths), tuple(tuple(i) for i in ids), t)
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
    keep: frozenset[str] | None = None,
    out_frames: int = 0,
) -> dict[str, np.ndarray]:
    """map_batches UDF: rows -> ``weak``/``strong`` uint8 [b,T,H,W,3], ``motion`` int32 [b,T,H,W],
    ``clip_id`` str [b]; only the clips in ``keep`` (all when None; ``out_frames`` = T then)."""
    d = cfg.data
    out_hw = (d.height, d.width)
    if keep is not None:
        mask = [c in keep for c in table.column("clip_id").to_pylist()]
        table = table.filter(pa.array(mask, pa.bool_()))
    seed = data_seed(cfg)
    weak, strong, motion, ids = [], [], [], []
    for c in _decode_rows(table, d.uri):
        rng = clip_rng(seed, epoch, pass_, c.clip_id)
        win = random_window(rng, c.frames.shape[0], d.clip_len)
        frames = _colour(c.frames[win], d.colour_order)
        w, s, m = augment_clip(frames, c.motion[win].astype(np.uint16), d.augment, rng, out_hw)
        weak.append(w)
        strong.append(s)
        motion.append(m.astype(np.int32))
        ids.append(c.clip_id)
    if not ids:  # every row of this batch belongs to another rank: an empty batch, same shapes
        t, h, w = out_frames, d.height, d.width
        return {
            "weak": np.zeros((0, t, h, w, 3), np.uint8),
            "strong": np.zeros((0, t, h, w, 3), np.uint8),
            "motion": np.zeros((0, t, h, w), np.int32),
            "clip_id": np.array([], dtype=object),
        }
    return {
        "weak": np.stack(weak),
        "strong": np.stack(strong),
        "motion": np.stack(motion),
        "clip_id": np.array(ids, dtype=object),
    }


def _eval_map(table: pa.Table, cfg: Config, width: int) -> dict[str, np.ndarray]:
    """map_batches UDF (no augmentation): frames uint8, gt/motion int32, gt_moving bool padded
    to ``width`` = max GT id of the split + 1, ``moving_known`` bool [b] (False where the clip
    was converted without moving flags: its objects are then neither static nor moving),
    clip_id str."""
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
        gt.append(g.astype(np.int32))
        motion.append(m.astype(np.int32))
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


def train_dataset(
    cfg: Config,
    epoch: int = 0,
    rank: int = 0,
    world: int = 1,
    pass_: int = 0,
    *,
    preserve_order: bool = True,
) -> ray.data.Dataset:
    """Rank ``rank``'s augmented clips of one pass of one epoch, as a lazy ordered Dataset
    (the file order and every augmentation draw are fixed by (data seed, epoch, pass))."""
    index = train_index(cfg)
    seed = data_seed(cfg)
    files, keep = epoch_files(index.paths, index.clip_ids, seed, epoch, pass_, rank, world)
    ds = ray.data.read_parquet(
        files, filesystem=index.fs, include_paths=True, override_num_blocks=len(files)
    )
    # the Dataset's own DataContext (a copy made by read_parquet): blocks leave in input order
    ds.context.execution_options.preserve_order = preserve_order
    t = index.num_frames
    out_frames = t if cfg.data.clip_len <= 0 or cfg.data.clip_len >= t else cfg.data.clip_len
    return ds.map_batches(
        _train_map,
        fn_kwargs={
            "cfg": cfg,
            "epoch": epoch,
            "pass_": pass_,
            "keep": keep,
            "out_frames": out_frames,
        },
        batch_format="pyarrow",
        batch_size=MAP_BATCH_CLIPS,
        zero_copy_batch=True,
    )


def eval_dataset(cfg: Config, split: str | None = None) -> ray.data.Dataset:
    """An eval split (default ``data.test_split``) in stored order, decoded without
    augmentation (ordered, so batches and metric sums are the same in every run)."""
    split = split or cfg.data.test_split
    fs, paths, manifest, _ = _check_parts(cfg, split)
    width = int(manifest.get("max_num_ids", 0)) + 1
    ds = ray.data.read_parquet(
        paths, filesystem=fs, include_paths=True, override_num_blocks=len(paths)
    )
    ds.context.execution_options.preserve_order = True
    return ds.map_batches(
        _eval_map,
        fn_kwargs={"cfg": cfg, "width": width},
        batch_format="pyarrow",
        batch_size=MAP_BATCH_CLIPS,
        zero_copy_batch=True,
    )


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


def _clips(ds: ray.data.Dataset, cfg: Config) -> Iterator[dict[str, np.ndarray]]:
    """One dict of numpy arrays per clip, in the Dataset's (preserved) order."""
    keys = ("weak", "strong", "motion", "clip_id")
    for b in ds.iter_batches(
        batch_size=None, batch_format="numpy", prefetch_batches=cfg.data.prefetch_batches
    ):
        for i in range(len(b["clip_id"])):
            yield {k: b[k][i] for k in keys}


def _collate(clips: list[dict], device: torch.device) -> dict[str, Any]:
    """Clips -> ``weak``/``strong`` float32 [B,T,3,H,W] normalised, ``motion`` int64
    [B,T,H,W] on ``device``, ``clip_id`` list[str]."""

    def stack(k: str, dtype) -> torch.Tensor:
        return torch.from_numpy(np.stack([c[k] for c in clips]).astype(dtype, copy=False))

    non_blocking = device.type == "cuda"
    return {
        "weak": normalise_frames(stack("weak", np.uint8).to(device, non_blocking=non_blocking)),
        "strong": normalise_frames(stack("strong", np.uint8).to(device, non_blocking=non_blocking)),
        "motion": stack("motion", np.int64).to(device, non_blocking=non_blocking),
        "clip_id": [str(c["clip_id"]) for c in clips],
    }


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
    """Batches ``skip`` .. ``steps``-1 of epoch ``epoch`` on rank ``rank`` of ``world``.

    One pass over the rank's clips rarely equals ``steps`` batches: further passes (pass 1, 2,
    ... of the same epoch, each freshly permuted and augmented) follow until ``steps`` batches
    are out; a pass's ragged tail is dropped, so every rank yields the same count. Skipping
    replays the stream (the skipped clips are read and augmented again), so batch k of a
    resumed epoch is batch k of the uninterrupted one. Yields ``weak``/``strong`` float32
    [B,T,3,H,W], ``motion`` int64 [B,T,H,W] on ``device`` and ``clip_id`` list[str]."""
    bs = per_worker_batch_size(cfg, world)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    seed = data_seed(cfg)
    done, pass_ = 0, 0
    while done < steps:
        ds = train_dataset(cfg, epoch, rank, world, pass_)
        got, batch = 0, []
        gen = rng(seed, BUFFER, epoch, pass_, rank)
        for clip in shuffle_buffer(_clips(ds, cfg), cfg.data.shuffle_buffer_clips, gen):
            batch.append(clip)
            if len(batch) < bs:
                continue
            if done >= skip:
                yield _collate(batch, device)
            batch = []
            got += 1
            done += 1
            if done >= steps:
                return
        if got == 0:
            raise DataError(
                f"the training shard of rank {rank} holds fewer clips than one batch "
                f"({bs} per worker)",
                uri=cfg.data.uri,
                expected="more training clips, or a smaller data.batch_size",
            )
        pass_ += 1


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
    batch may be smaller."""
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
