"""The assembled DIOD model (reference ``SlotAttentionAutoEncoder`` of ``models/model_bg.py``).

video [B, T, 3, H, W] -> trunk (ResNet-18 at stride 4, or frozen DINOv2) -> ConvGRU over T ->
ReLU -> soft position embedding -> tokens -> token norm -> MLP -> slot attention (one step per
frame, background slot) -> slots_combine = sum_k slot_k attn_k -> transposed-conv decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from diod_ray.model.convgru import ConvGRU
from diod_ray.model.decoder import Decoder
from diod_ray.model.position import SoftPositionEmbed
from diod_ray.model.resnet import ResNetTrunk, stride4_size
from diod_ray.model.slot_attention import SlotAttention
from diod_ray.model.token_norm import TokenNorm

if TYPE_CHECKING:
    from diod_ray.config import Config, ModelConfig


@dataclass
class ModelState:
    """What a clip hands to the next one when streaming: final slots [B, K, D] and the final
    hidden state of each ConvGRU layer [B, G, h, w] (detached)."""

    slots: Tensor
    hidden: list[Tensor] = field(default_factory=list)


@dataclass
class ModelOutput:
    attn: Tensor  # [B, T, K, h, w] softmax over slots (float32)
    fg: Tensor  # [B, T, h, w] W_fg = 1 - attn of the background slot
    recon: Tensor  # [B, T, 3, H, W]
    slots: Tensor  # [B, T, K, D]
    state: ModelState


class DIODModel(nn.Module):
    """Plain nn.Module; ``forward(video, state=None) -> ModelOutput``."""

    def __init__(self, mcfg: ModelConfig, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width
        self.grid_hw = (stride4_size(height), stride4_size(width))
        if mcfg.encoder == "resnet18":
            self.trunk: nn.Module = ResNetTrunk(mcfg.trunk_width)
        elif mcfg.encoder == "dinov2":
            from diod_ray.model.dinov2 import DinoV2Encoder

            self.trunk = DinoV2Encoder(mcfg.dinov2_weights)
        else:
            raise ValueError(f"model.encoder: {mcfg.encoder!r} is not one of 'resnet18', 'dinov2'")
        self.encoder = mcfg.encoder
        G, D = mcfg.gru_hidden, mcfg.slot_dim
        self.convgru = ConvGRU(self.trunk.out_channels, G, mcfg.gru_layers, mcfg.gru_kernel)
        self.position = SoftPositionEmbed(G)
        self.token_norm = TokenNorm(mcfg.token_norm, G, self.grid_hw)
        self.mlp = nn.Sequential(nn.Linear(G, D), nn.ReLU(inplace=True), nn.Linear(D, D))
        self.slot_attention = SlotAttention(
            mcfg.num_slots,
            D,
            mcfg.slot_mlp_hidden,
            eps=mcfg.attn_eps,
            slot_init=mcfg.slot_init,
            pre_steps=mcfg.pre_steps,
            steps_per_frame=mcfg.steps_per_frame,
        )
        self.decoder = Decoder(D, mcfg.decoder_channels)
        K = mcfg.num_slots
        if not -K <= mcfg.bg_slot < K:
            raise ValueError(f"model.bg_slot: {mcfg.bg_slot} is out of range for {K} slots")
        self.num_slots = K
        self.bg_index = mcfg.bg_slot % K

    def encode(self, frames: Tensor) -> Tensor:
        """[M, 3, H, W] -> trunk features [M, C, h, w]."""
        if self.encoder == "dinov2":
            return self.trunk(frames, self.grid_hw_for(frames.shape[-2:]))
        if self.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            frames = frames.contiguous(memory_format=torch.channels_last)
        return self.trunk(frames)

    @staticmethod
    def grid_hw_for(hw) -> tuple[int, int]:
        return stride4_size(int(hw[0])), stride4_size(int(hw[1]))

    def forward(self, video: Tensor, state: ModelState | None = None) -> ModelOutput:
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"DIODModel: video must be [B,T,3,H,W], got {tuple(video.shape)}")
        B, T, _, H, W = video.shape
        h, w = self.grid_hw_for((H, W))
        feats = self.encode(video.flatten(0, 1))  # [B*T, C, h, w]
        feats = feats.unflatten(0, (B, T))  # [B, T, C, h, w]
        hidden_in = state.hidden if state is not None and state.hidden else None
        seq, hidden = self.convgru(feats, hidden_in)  # [B, T, G, h, w], list of [B, G, h, w]
        x = self.position(torch.relu(seq).flatten(0, 1))  # [B*T, G, h, w]
        tokens = x.flatten(2).transpose(1, 2)  # [B*T, N, G], N = h*w
        tokens = self.mlp(self.token_norm(tokens, (h, w)))  # [B*T, N, D]
        slots_in = state.slots if state is not None else None
        slots, attn, final = self.slot_attention(tokens.unflatten(0, (B, T)), slots_in)
        # slots [B, T, K, D], attn [B, T, K, N] (softmax over slots), final [B, K, D]
        combine = torch.einsum("btkd,btkn->btdn", slots, attn.to(slots.dtype))  # [B, T, D, N]
        combine = combine.reshape(B * T, -1, h, w)  # [B*T, D, h, w]
        recon = self.decoder(combine, (H, W)).unflatten(0, (B, T))  # [B, T, 3, H, W]
        attn = attn.reshape(B, T, self.num_slots, h, w)
        fg = 1.0 - attn[:, :, self.bg_index]  # [B, T, h, w]
        new_state = ModelState(slots=final.detach(), hidden=[s.detach() for s in hidden])
        return ModelOutput(attn=attn, fg=fg, recon=recon, slots=slots, state=new_state)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per part (a frozen DINOv2 trunk counts 0)."""
        parts = ["trunk", "convgru", "position", "token_norm", "mlp", "slot_attention", "decoder"]
        counts = {
            p: sum(t.numel() for t in getattr(self, p).parameters() if t.requires_grad)
            for p in parts
        }
        counts["total"] = sum(counts.values())
        return counts


def build_model(cfg: Config) -> DIODModel:
    """The DIOD model for ``cfg.model`` at the input resolution ``cfg.data.height x width``."""
    return DIODModel(cfg.model, cfg.data.height, cfg.data.width)
