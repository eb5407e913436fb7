"""The order and randomness of the training data: a function of (seed, epoch, pass, rank, clip).

No Ray here (datasets.py and eval_split.py are this package's Ray files); see
docs/performance.md, "Deterministic runs", for why each draw is keyed the way it is.

- :func:`data_seed`: ``data.shuffle_seed``, or ``run.seed`` when it is -1 (the default), so a
  sweep over ``run.seed`` varies the data order too.
- :func:`pass_reads`: one pass's file order, permuted by (seed, epoch, pass) and dealt to ranks;
  :func:`epoch_plan`: the passes an epoch needs on a rank, from the manifest's clip counts.
- :func:`clip_rng`: one clip's augmentation draws, keyed by (seed, epoch, pass, clip_id) and
  therefore independent of which Ray Data task or batch the clip lands in.
- :func:`shuffle_buffer`: mixes consecutive clips (of one file, often one video) across files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

# stream tags of the seed sequences, so the draws of one (seed, epoch) never coincide
FILES, AUGMENT, BUFFER = 1, 2, 3

T = TypeVar("T")


def data_seed(cfg) -> int:
    """The data path's seed: ``data.shuffle_seed``, or ``run.seed`` when it is -1 (default)."""
    s = cfg.data.shuffle_seed
    return cfg.run.seed if s < 0 else s


def rng(*key: int) -> np.random.Generator:
    """A generator seeded by a tuple of integers (NumPy SeedSequence entropy)."""
    return np.random.default_rng([int(k) % 2**63 for k in key])


def clip_rng(seed: int, epoch: int, pass_: int, clip_id: str) -> np.random.Generator:
    """The augmentation generator of one clip in one pass: independent of batching."""
    h = int.from_bytes(hashlib.blake2b(clip_id.encode(), digest_size=8).digest(), "little")
    return rng(seed, AUGMENT, epoch, pass_, h)


@dataclass(frozen=True)
class FileRead:
    """One read of one pass: part file ``file`` (index in the split's manifest order), its rows
    ``first``, ``first + step``, ... (``step`` 1: every row), at most ``count`` of them."""

    file: int
    first: int
    step: int
    count: int


def kept_rows(n: int, first: int, step: int) -> int:
    """How many of rows ``first``, ``first + step``, ... lie below ``n``."""
    return max(0, -(-(n - first) // step))


def pass_reads(
    counts: Sequence[int], seed: int, epoch: int, pass_: int, rank: int, world: int
) -> list[FileRead]:
    """The reads of rank ``rank`` of ``world`` in one pass, in stream order.

    The file order is a permutation drawn from (seed, epoch, pass); files are dealt round robin
    to the ranks. With fewer files than ranks, every rank reads all of them and keeps the clips
    at positions rank, rank+W, ... of the permuted stream (reading W times the bytes, which only
    happens on splits too small to matter). Only the per-file clip counts are needed (the
    manifest's), never the files."""
    order = rng(seed, FILES, epoch, pass_).permutation(len(counts))
    if len(order) >= world:
        return [FileRead(int(i), 0, 1, int(counts[i])) for i in order[rank::world]]
    reads, offset = [], 0
    for i in order:
        n = int(counts[i])
        first = (rank - offset) % world
        k = kept_rows(n, first, world)
        if k:
            reads.append(FileRead(int(i), first, world, k))
        offset += n
    return reads


@dataclass(frozen=True)
class PassPlan:
    """What one pass contributes to an epoch on one rank: its reads (cut after the last clip the
    batches can need), the clips they hold, the batches it yields and how many of them are
    replayed without being yielded (``skip``, a resumed epoch)."""

    pass_: int
    reads: tuple[FileRead, ...]
    clips: int
    batches: int
    skip: int


class TooFewClips(ValueError):
    """A pass of a rank holds fewer clips than one batch."""


def epoch_plan(
    counts: Sequence[int],
    seed: int,
    epoch: int,
    steps: int,
    batch: int,
    buffer: int,
    rank: int,
    world: int,
    skip: int = 0,
) -> list[PassPlan]:
    """Passes 0, 1, ... of an epoch until ``steps`` batches of ``batch`` clips are out; a pass's
    ragged tail is dropped. Passes whose batches all fall in the first ``skip`` are left out (not
    read at all); within the first pass kept, the skipped batches are replayed, so batch k of a
    resumed epoch is batch k of the uninterrupted one. A pass needs only its first
    ``buffer + batches * batch`` clips (the shuffle buffer yields one clip per clip in once
    full), or all of them when that is more than it holds."""
    size = max(1, buffer)
    plans: list[PassPlan] = []
    done, p = 0, 0
    while done < steps:
        reads = pass_reads(counts, seed, epoch, p, rank, world)
        n = sum(r.count for r in reads)
        if n // batch == 0:
            raise TooFewClips(f"pass {p} of epoch {epoch} holds {n} clips on rank {rank}")
        take = min(n // batch, steps - done)
        if done + take <= skip:  # the whole pass was consumed before the resume
            done, p = done + take, p + 1
            continue
        need, kept, got = min(n, size + take * batch), [], 0
        for r in reads:
            if got >= need:
                break
            k = min(r.count, need - got)
            kept.append(FileRead(r.file, r.first, r.step, k))
            got += k
        plans.append(PassPlan(p, tuple(kept), got, take, max(0, skip - done)))
        done, p = done + take, p + 1
    return plans


def shuffle_buffer(items: Iterable[T], size: int, gen: np.random.Generator) -> Iterator[T]:
    """A seeded shuffle buffer of ``size`` items: once full, each incoming item replaces a
    random one, which leaves; at the end the rest leave in random order. A deterministic
    function of the input order and ``gen``, whatever the blocking of the input."""
    size = max(1, size)
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(gen.integers(len(buf)))
        out, buf[j] = buf[j], item
        yield out
    for j in gen.permutation(len(buf)):
        yield buf[j]
