"""Slot attention with the reference's temporal recurrence (one step per frame).

Per step (Locatello et al. 2020 as in the reference): LayerNorm the slots, q = to_q(slots),
logits = q k^T * D^-0.5, softmax over SLOTS (+eps), renormalise over tokens for a weighted
mean of v, GRUCell update, residual MLP. The attention returned is the softmax over slots before
the renormalisation (sums to 1 over slots at each token).

Over time: ``pre_steps`` steps on frame 0 from the initial slots, then ``steps_per_frame`` steps on
each frame t starting from frame t-1's slots. When a previous clip's slots are given (streaming),
the pre-steps are skipped.

Initial slots: "learned" = per-slot mean and log-scale parameters [K, D], a fresh draw
mu + sigma * N(0, 1) per clip in training (reparameterised, so both are learned) and the mean at
eval; "fixed" = the reference's single random draw N(mu, |sigma|) at construction, kept as a
buffer (same for every clip, not learned).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SlotAttention(nn.Module):
    def __init__(
        self,
        num_slots: int,
        dim: int,
        mlp_hidden: int = 128,
        eps: float = 1e-8,
        slot_init: str = "learned",
        pre_steps: int = 1,
        steps_per_frame: int = 1,
    ):
        super().__init__()
        if num_slots < 2:
            raise ValueError(
                f"model.num_slots must be >= 2 (one is the background), got {num_slots}"
            )
        if steps_per_frame < 1 or pre_steps < 0:
            raise ValueError(
                f"model.steps_per_frame must be >= 1 and model.pre_steps >= 0, got "
                f"{steps_per_frame} and {pre_steps}"
            )
        self.num_slots = num_slots
        self.dim = dim
        self.eps = eps
        self.scale = dim**-0.5
        self.pre_steps = pre_steps
        self.steps_per_frame = steps_per_frame
        self.slot_init = slot_init
        if slot_init == "learned":
            self.slots_mu = nn.Parameter(torch.randn(1, num_slots, dim))
            # initial scale 0.1: slot identities stay distinct from the first step
            self.slots_log_sigma = nn.Parameter(torch.full((1, num_slots, dim), math.log(0.1)))
        elif slot_init == "fixed":
            mu, sigma = torch.randn(1, 1, dim), torch.randn(1, 1, dim)
            self.register_buffer("slots", torch.normal(mu.expand(1, num_slots, dim), sigma.abs()))
        else:
            raise ValueError(f"model.slot_init: {slot_init!r} is not one of 'learned', 'fixed'")
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_hidden), nn.ReLU(inplace=True), nn.Linear(mlp_hidden, dim)
        )
        self.norm_input = nn.LayerNorm(dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.norm_pre_ff = nn.LayerNorm(dim)

    def initial_slots(self, batch: int, device: torch.device) -> Tensor:
        """[B, K, D] starting slots for new clips."""
        if self.slot_init == "fixed":
            return self.slots.expand(batch, -1, -1)
        mu = self.slots_mu.expand(batch, -1, -1)
        if not self.training:
            return mu
        sigma = self.slots_log_sigma.exp().expand(batch, -1, -1)
        return mu + sigma * torch.randn(mu.shape, device=device, dtype=mu.dtype)

    def step(self, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One update. slots [B, K, D], k and v [B, N, D] -> (slots [B, K, D], attn [B, K, N])."""
        B, K, D = slots.shape
        q = self.to_q(self.norm_slots(slots))  # [B, K, D]
        logits = torch.einsum("bkd,bnd->bkn", q, k) * self.scale  # [B, K, N]
        attn = logits.float().softmax(dim=1)  # softmax over slots, [B, K, N]
        weights = attn + self.eps
        weights = weights / weights.sum(dim=-1, keepdim=True)  # renormalised over tokens
        updates = torch.einsum("bnd,bkn->bkd", v, weights.to(v.dtype))  # [B, K, D]
        new = self.gru(updates.reshape(B * K, D), slots.reshape(B * K, D).to(updates.dtype))
        new = new.reshape(B, K, D)
        new = new + self.mlp(self.norm_pre_ff(new))  # residual MLP
        return new, attn

    def forward(self, tokens: Tensor, slots: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """tokens [B, T, N, D]; ``slots`` [B, K, D] from a previous clip or None.

        Returns (slots per frame [B, T, K, D], attention per frame [B, T, K, N] float32,
        final slots [B, K, D]).
        """
        B, T, N, D = tokens.shape
        inputs = self.norm_input(tokens)  # [B, T, N, D]
        k = self.to_k(inputs)  # [B, T, N, D]
        v = self.to_v(inputs)  # [B, T, N, D]
        if slots is None:
            slots = self.initial_slots(B, tokens.device)
            for _ in range(self.pre_steps):
                slots, _ = self.step(slots, k[:, 0], v[:, 0])
        elif tuple(slots.shape) != (B, self.num_slots, D):
            raise ValueError(
                f"SlotAttention: state slots have shape {tuple(slots.shape)}, expected "
                f"{(B, self.num_slots, D)}"
            )
        per_frame, attns = [], []
        for t in range(T):
            for _ in range(self.steps_per_frame):
                slots, attn = self.step(slots, k[:, t], v[:, t])
            per_frame.append(slots)
            attns.append(attn)
        return torch.stack(per_frame, dim=1), torch.stack(attns, dim=1), slots
