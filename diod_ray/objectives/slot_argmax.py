"""Per-pixel winning slot: value and index of the maximum over the K attention maps.

The first step of teacher pseudo-labelling (paper §3.3.2) is an argmax over K maps of N frames,
e.g. 45 maps x 40 frames x 120 x 242 = 52 M floats at the TRI-PD grid. On the GPU
``torch.max(dim=1)`` is the right tool. On the CPU it is not: its value-and-index reduction over a
non-innermost dimension runs a scalar loop. A single pass that walks the K maps of one frame in
order and keeps a running maximum and its slot, with the per-frame running arrays staying in the
L2 cache, reads the maps once (timings in docs/perf/distill.md). It is compiled with numba (a
maintained JIT for exactly such loops; no C extension to build or ship).

Semantics are those of ``torch.max(dim=1)`` on finite input: the first slot wins ties (strict
``>``). A NaN never wins here, whereas torch would return it; attention maps are softmax outputs,
so the difference never arises in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_KERNEL = None


def _kernel():
    """The compiled CPU kernel (compiled on first use, cached on disk by numba)."""
    global _KERNEL
    if _KERNEL is None:
        import numba  # deferred: importing numba costs ~0.3 s and only this CPU path needs it

        @numba.njit(cache=True, boundscheck=False, nogil=True)
        def running_max(x, best, idx):  # x [N, K, P] f32 -> best [N, P] f32, idx [N, P] i64
            n, k, p = x.shape
            for i in range(n):
                b = best[i]
                ix = idx[i]
                first = x[i, 0]
                for q in range(p):
                    b[q] = first[q]
                    ix[q] = 0
                for s in range(1, k):
                    row = x[i, s]
                    for q in range(p):
                        v = row[q]
                        if v > b[q]:  # strict: the first slot keeps ties, as torch.max does
                            b[q] = v
                            ix[q] = s

        _KERNEL = running_max
    return _KERNEL


def slot_argmax(attn: Tensor) -> tuple[Tensor, Tensor]:
    """attn [N, K, h, w] -> (value [N, h, w], slot [N, h, w] int64), the maximum over dim 1."""
    if attn.dim() != 4:
        raise ValueError(f"slot_argmax: attn must be [N, K, h, w], got {tuple(attn.shape)}")
    n, k, h, w = attn.shape
    if attn.device.type != "cpu" or attn.dtype != torch.float32 or k == 0 or attn.numel() == 0:
        return attn.max(dim=1)
    x = attn.detach().contiguous().view(n, k, h * w).numpy()
    best = np.empty((n, h * w), dtype=np.float32)
    idx = np.empty((n, h * w), dtype=np.int64)
    _kernel()(x, best, idx)
    return torch.from_numpy(best).view(n, h, w), torch.from_numpy(idx).view(n, h, w)
