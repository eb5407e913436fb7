"""Convolutional GRU over the frames of a clip (reference ``models/ConvGRU.py``), CPU or GPU.

Each cell has one conv over [input, hidden] giving the reset and update gates (sigmoid) and one
conv over [input, reset * hidden] giving the tanh candidate; h' = (1 - z) h + z candidate.
The convolution over the concatenation is split into its input part and its hidden part (same
weights, same result): the input part of every frame is computed in ONE batched conv before the
recurrence, only the small hidden-state convs run per time step. An initial hidden state can be
given (streaming over clips); otherwise it starts at zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvGRUCell(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"model.gru_kernel must be odd, got {kernel_size}")
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        pad = kernel_size // 2
        self.conv_gates = nn.Conv2d(
            input_dim + hidden_dim, 2 * hidden_dim, kernel_size, padding=pad
        )
        self.conv_can = nn.Conv2d(input_dim + hidden_dim, hidden_dim, kernel_size, padding=pad)

    def input_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Input part of both convs (with their biases) for any number of frames [M, C, h, w]."""
        c = self.input_dim
        pad = self.conv_gates.padding
        # contiguous weight slices: strided ones fall back to torch's slow CPU conv
        w_gates = self.conv_gates.weight[:, :c].contiguous()
        w_can = self.conv_can.weight[:, :c].contiguous()
        gates = F.conv2d(x, w_gates, self.conv_gates.bias, padding=pad)
        can = F.conv2d(x, w_can, self.conv_can.bias, padding=pad)
        return gates, can  # [M, 2G, h, w], [M, G, h, w]

    def step(self, gates_x: Tensor, can_x: Tensor, h: Tensor) -> Tensor:
        """One time step from the precomputed input terms and the hidden state h [B, G, h, w]."""
        c = self.input_dim
        pad = self.conv_gates.padding
        w_gates = self.conv_gates.weight[:, c:].contiguous()
        gates = gates_x + F.conv2d(h, w_gates, padding=pad)  # [B, 2G, h, w]
        reset, update = torch.sigmoid(gates).chunk(2, dim=1)  # [B, G, h, w] each
        can = can_x + F.conv2d(reset * h, self.conv_can.weight[:, c:].contiguous(), padding=pad)
        return (1 - update) * h + update * torch.tanh(can)


class ConvGRU(nn.Module):
    """Stacked ConvGRU. ``forward(x [B, T, C, h, w], hidden)`` -> (last layer's outputs
    [B, T, G, h, w], final hidden state of every layer: list of [B, G, h, w])."""

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int = 2, kernel_size: int = 3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"model.gru_layers must be >= 1, got {num_layers}")
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.cells = nn.ModuleList(ConvGRUCell(d, hidden_dim, kernel_size) for d in dims)
        self.hidden_dim = hidden_dim

    def forward(self, x: Tensor, hidden: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        B, T, _, h, w = x.shape
        if hidden is not None and len(hidden) != len(self.cells):
            raise ValueError(
                f"ConvGRU: {len(self.cells)} hidden states expected, got {len(hidden)}"
            )
        finals: list[Tensor] = []
        seq = x
        for i, cell in enumerate(self.cells):
            gates_x, can_x = cell.input_terms(seq.flatten(0, 1))  # all frames at once: [B*T, ...]
            gates_x = gates_x.unflatten(0, (B, T))  # [B, T, 2G, h, w]
            can_x = can_x.unflatten(0, (B, T))  # [B, T, G, h, w]
            if hidden is None:
                state = gates_x.new_zeros(B, self.hidden_dim, h, w)
            else:
                state = hidden[i]
                if tuple(state.shape) != (B, self.hidden_dim, h, w):
                    raise ValueError(
                        f"ConvGRU: hidden state {i} has shape {tuple(state.shape)}, expected "
                        f"{(B, self.hidden_dim, h, w)}"
                    )
            outs = []
            for t in range(T):
                state = cell.step(gates_x[:, t], can_x[:, t], state)
                outs.append(state)
            seq = torch.stack(outs, dim=1)  # [B, T, G, h, w]
            finals.append(state)
        return seq, finals
