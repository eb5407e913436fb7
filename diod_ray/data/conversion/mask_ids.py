"""Instance-id masks of the converters: reading PNGs, KITTI's instance encoding, id relabelling
(``diod_ray.data.conversion.convert``; the authors' conventions in docs/data.md and
docs/reference-notes.md §5)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from diod_ray.data.errors import SourceError
from diod_ray.data.shards.rows import MAX_MASK_ID


def read_mask(path: Path) -> np.ndarray:
    """An instance-id PNG (8 or 16 bit) -> int32 [H,W]; colour-coded masks get one id per colour."""
    if not path.exists():
        raise SourceError(
            "mask missing", file=str(path), expected="a mask PNG named like its frame"
        )
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise SourceError("unreadable mask", file=str(path), expected="an instance-id PNG")
    if m.ndim == 3:
        flat = m[..., :3].reshape(-1, 3).astype(np.int64)
        key = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
        uniq, inv = np.unique(key, return_inverse=True)
        # black stays background; other colours become 1..n in colour order
        ids = np.arange(len(uniq)) + (0 if uniq[0] == 0 else 1)
        m = ids[inv].reshape(m.shape[:2])
    m = m.astype(np.int64)
    if m.max() > MAX_MASK_ID:
        raise SourceError(
            f"mask id {m.max()} too large", file=str(path), expected=f"<= {MAX_MASK_ID}"
        )
    return m.astype(np.int32)


def relabel_per_frame(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """Per frame: drop instances with <= ``min_pixels`` px, ids made contiguous 1..n (reference)."""
    out = np.zeros_like(masks, dtype=np.int32)
    for t, m in enumerate(masks):
        ids, counts = np.unique(m, return_counts=True)
        keep = [i for i, c in zip(ids, counts) if i != 0 and c > min_pixels]
        for new, old in enumerate(keep, start=1):
            out[t][m == old] = new
    return out


def relabel_video(masks: np.ndarray, first_min_pixels: int) -> np.ndarray:
    """One id mapping for the whole video: an instance gets the next id the first time it covers
    more than ``first_min_pixels`` px, then keeps it in later frames whatever its size."""
    mapping: dict[int, int] = {}
    out = np.zeros_like(masks, dtype=np.int32)
    for t, m in enumerate(masks):
        ids, counts = np.unique(m, return_counts=True)
        for i, c in zip(ids, counts):
            if i != 0 and i not in mapping and c > first_min_pixels:
                mapping[int(i)] = len(mapping) + 1
        if mapping:
            keys = np.array(sorted(mapping))  # sorted source ids
            vals = np.array([mapping[k] for k in keys], np.int32)
            idx = np.clip(np.searchsorted(keys, m), 0, len(keys) - 1)
            out[t] = np.where(keys[idx] == m, vals[idx], 0)
    return out


def decode_kitti_instances(m: np.ndarray) -> np.ndarray:
    """Official KITTI instance map -> instance ids [H,W] int32 (0 = background).

    The official PNGs store ``class * 256 + instance``: a pixel with instance 0 belongs to a
    "stuff" class (road, sky, ...) and is background; each distinct (class, instance) value is
    one object, numbered 1..n in value order. Maps whose values are all < 256 are already plain
    instance ids (DOM's converted test set) and are returned unchanged.
    """
    if m.max() < 256:
        return m.astype(np.int32)
    objects = np.where(m % 256 == 0, 0, m)
    values, ids = np.unique(objects, return_inverse=True)
    ids = ids.reshape(m.shape) + (0 if values[0] == 0 else 1)
    return ids.astype(np.int32)
