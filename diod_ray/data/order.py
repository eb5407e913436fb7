"""The order and randomness of the training data: a function of (seed, epoch, pass, rank, clip).

No Ray here (diod_ray/data/pipeline.py is the only Ray Data file); see docs/performance.md,
"Deterministic runs", for why each draw is keyed the way it is.

- :func:`data_seed`: ``data.shuffle_seed``, or ``run.seed`` when it is -1 (the default), so a
  sweep over ``run.seed`` varies the data order too.
- :func:`epoch_files`: one pass's file order, permuted by (seed, epoch, pass) and dealt to ranks.
- :func:`clip_rng`: one clip's augmentation draws, keyed by (seed, epoch, pass, clip_id) and
  therefore independent of which Ray Data task or batch the clip lands in.
- :func:`shuffle_buffer`: mixes consecutive clips (of one file, often one video) across files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
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


def epoch_files(
    paths: Sequence[str],
    clip_ids: Sequence[Sequence[str]],
    seed: int,
    epoch: int,
    pass_: int,
    rank: int,
    world: int,
) -> tuple[list[str], frozenset[str] | None]:
    """(files rank ``rank`` reads, in order; clip ids it keeps, None = all) for one pass.

    The file order is a permutation drawn from (seed, epoch, pass); files are dealt round robin
    to the ranks. With fewer files than ranks, every rank reads all of them and keeps the clips
    at positions rank, rank+W, ... of the permuted stream (reading W times the bytes, which only
    happens on splits too small to matter)."""
    order = rng(seed, FILES, epoch, pass_).permutation(len(paths))
    if len(order) >= world:
        return [paths[i] for i in order[rank::world]], None
    stream = [c for i in order for c in clip_ids[i]]
    return [paths[i] for i in order], frozenset(stream[rank::world])


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
