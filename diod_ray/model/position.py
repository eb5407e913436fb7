"""Soft position embedding: a linear map of the grid [y, x, 1-y, 1-x], added to the features.

The grid is computed from the feature size at forward time (cached per size and device), so
the module is not tied to one resolution (the reference registers it as a buffer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def build_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[h, w, 4] grid of (y, x, 1-y, 1-x), each coordinate linspace(0, 1) with 'ij' indexing."""
    ys = torch.linspace(0.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(0.0, 1.0, w, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # [h, w] each
    return torch.stack([yy, xx, 1 - yy, 1 - xx], dim=-1)


class SoftPositionEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(4, dim)
        self._grids: dict[tuple, Tensor] = {}

    def grid(self, h: int, w: int, device: torch.device) -> Tensor:
        key = (h, w, device)
        if torch.is_inference_mode_enabled():
            # an inference tensor in the cache would break a later training forward
            cached = self._grids.get(key)
            return cached if cached is not None else build_grid(h, w, device, torch.float32)
        if key not in self._grids or self._grids[key].device.type == "meta":
            self._grids[key] = build_grid(h, w, device, torch.float32)
        return self._grids[key]

    def forward(self, x: Tensor) -> Tensor:
        """x [N, C, h, w] -> x + proj(grid) broadcast over N."""
        h, w = x.shape[-2:]
        emb = self.proj(self.grid(h, w, x.device))  # [h, w, C]
        return x + emb.permute(2, 0, 1).to(x.dtype)  # [N, C, h, w]
