"""Batches on the worker: the training stream and evaluation batches, as torch tensors.

Training data is a deterministic function of (shuffle seed, epoch, pass, position, rank)
(docs/performance.md, "Deterministic runs"):

- :class:`TrainStream`: each rank builds ONE Dataset for the rest of its run (all remaining
  epochs and passes, planned from the manifest's clip counts by
  :func:`diod_ray.data.streaming.order.epoch_plan`; the Dataset is
  :func:`diod_ray.data.streaming.datasets.train_dataset`), when its worker starts (after the
  checkpoint is restored, so a resumed run plans from its step) and never again; the pipeline
  stays warm across epoch boundaries.
- On the worker a seeded shuffle buffer (``data.shuffle_buffer_clips``; seed from (seed, epoch,
  pass, rank)) mixes clips across files, restarted at every pass, so a resumed run replays the
  same stream: whole passes before the resume point are not read, and the batches of the
  resumed pass before it are replayed, not yielded.

Ray Data's ``local_shuffle_buffer_size`` is not used: its buffer runs across the whole iteration
(no restart at a pass, so no exact resume mid-run) and it yields short batches mid-stream
(ray-project/ray#66085). Ray Train's ``streaming_split`` is not used for training either: its
dataset is built before the workers restore their checkpoint, so it cannot start where a resumed
run stands; the decision and what it costs are in docs/performance.md.

Evaluation batches (:func:`iter_eval_batches`) come from a rank's share of an eval Dataset
(:class:`diod_ray.data.streaming.eval_split.EvalSplit`) in its stored order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from diod_ray.config import Config, to_dict
from diod_ray.data.errors import DataError
from diod_ray.data.streaming.datasets import train_dataset, train_index
from diod_ray.data.streaming.order import (
    BUFFER,
    FileRead,
    PassPlan,
    TooFewClips,
    data_seed,
    epoch_plan,
    rng,
    shuffle_buffer,
)


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
