"""Normalisation of the encoder tokens before the MLP.

"per_token" (default): LayerNorm over channels, independent of the resolution.
"reference": one LayerNorm over all tokens and channels jointly ([N, C] elementwise affine, about
3.7 M parameters at the TRI-PD grid), tied to the resolution it was built for.
"""

from __future__ import annotations

from torch import Tensor, nn


class TokenNorm(nn.Module):
    def __init__(self, mode: str, dim: int, grid_hw: tuple[int, int]):
        super().__init__()
        self.mode = mode
        self.grid_hw = tuple(grid_hw)
        if mode == "per_token":
            self.norm = nn.LayerNorm(dim)
        elif mode == "reference":
            self.norm = nn.LayerNorm([grid_hw[0] * grid_hw[1], dim])
        else:
            raise ValueError(f"model.token_norm: {mode!r} is not one of 'per_token', 'reference'")

    def forward(self, tokens: Tensor, grid_hw: tuple[int, int]) -> Tensor:
        """tokens [M, h*w, C] -> same shape."""
        if self.mode == "reference" and tuple(grid_hw) != self.grid_hw:
            raise ValueError(
                f"model.token_norm='reference' normalises over all tokens jointly and was built for "
                f"the {self.grid_hw[0]}x{self.grid_hw[1]} grid (input "
                f"{4 * self.grid_hw[0]}x{4 * self.grid_hw[1]} or smaller by < 4 px), but got a "
                f"{grid_hw[0]}x{grid_hw[1]} grid; use model.token_norm='per_token' to run at "
                "other resolutions"
            )
        return self.norm(tokens)
