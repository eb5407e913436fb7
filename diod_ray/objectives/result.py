"""The value every objective returns: a differentiable total plus detached terms and statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class LossResult:
    """``total`` is what the optimiser steps on; ``terms`` are the detached, UNweighted loss terms
    (scalar float tensors, for logging); ``stats`` are plain floats (counts, shares)."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
