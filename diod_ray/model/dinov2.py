"""Frozen DINOv2 ViT-S/14 feature extractor for DIOD* (reference ``DIOD_DINOv2``), plain torch.

The module names follow the official ``dinov2_vits14`` (facebookresearch/dinov2) so its
state_dict loads with ``strict=True`` from a local file (``model.dinov2_weights``); nothing is
downloaded. Features: the outputs of the last four blocks, each through the final LayerNorm
(``get_intermediate_layers(x, 4)``), class token dropped, concatenated -> 1536 channels on the
patch grid, upsampled with nearest interpolation (like the reference) to the stride-4 grid.

Input arrives normalised as (x - 0.5) / 0.5 and is converted to ImageNet normalisation. Inputs
whose size is not a multiple of 14 are resized (bilinear) up to the next multiple of 14.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, hp*wp, dim]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, N, C/heads]
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2ViTS14(nn.Module):
    """ViT-S/14: patch 14, 12 blocks, dim 384, 6 heads, layer scale, class token, pos-embed for
    a 518x518 input (37x37 patches) interpolated (bicubic) to the actual patch grid."""

    def __init__(self, patch: int = 14, dim: int = 384, depth: int = 12, heads: int = 6):
        super().__init__()
        self.patch = patch
        self.dim = dim
        self.base_grid = 518 // patch  # 37
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.base_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused, kept for strict loading
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolated_pos_embed(self, hp: int, wp: int) -> Tensor:
        """[1, 1 + hp*wp, dim] position embedding for an hp x wp patch grid."""
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (hp, wp) == (self.base_grid, self.base_grid):
            return self.pos_embed
        g = self.base_grid
        grid = patch_pos.reshape(1, g, g, self.dim).permute(0, 3, 1, 2)  # [1, dim, 37, 37]
        # like the official code: scale factors with the historical +0.1 offset, no antialias
        scale = ((hp + 0.1) / g, (wp + 0.1) / g)
        grid = F.interpolate(grid.float(), scale_factor=scale, mode="bicubic", align_corners=False)
        grid = grid.to(patch_pos.dtype).permute(0, 2, 3, 1).reshape(1, hp * wp, self.dim)
        return torch.cat([cls_pos, grid], dim=1)

    def intermediate_layers(self, x: Tensor, n: int = 4) -> list[Tensor]:
        """Outputs of the last ``n`` blocks through the final norm, without the class token:
        list of [B, dim, hp, wp] (``get_intermediate_layers(x, n, reshape=True)``)."""
        B, _, H, W = x.shape
        hp, wp = H // self.patch, W // self.patch
        tokens = self.patch_embed(x)  # [B, hp*wp, dim]
        tokens = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)
        tokens = tokens + self.interpolated_pos_embed(hp, wp)
        outs = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i >= len(self.blocks) - n:
                feat = self.norm(tokens)[:, 1:]  # [B, hp*wp, dim] (class token dropped)
                outs.append(feat.transpose(1, 2).reshape(B, self.dim, hp, wp))
        return outs


class DinoV2Encoder(nn.Module):
    """Frozen feature extractor: [M, 3, H, W] normalised (x-0.5)/0.5 -> [M, 1536, h, w]."""

    def __init__(self, weights: str = "", layers: int = 4):
        super().__init__()
        self.vit = DinoV2ViTS14()
        self.layers = layers
        self.out_channels = layers * self.vit.dim
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"model.dinov2_weights: {str(path)!r} does not exist (a local dinov2_vits14 "
                    "state_dict file is required; nothing is downloaded)"
                )
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                self.vit.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"model.dinov2_weights {str(path)!r}: {exc}") from exc
        self.vit.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DinoV2Encoder:
        super().train(mode)
        self.vit.eval()  # frozen: always in eval mode
        return self

    def forward(self, x: Tensor, grid_hw: tuple[int, int]) -> Tensor:
        x = (x * 0.5 + 0.5 - self.mean) / self.std  # (x-0.5)/0.5 -> ImageNet normalisation
        H, W = x.shape[-2:]
        p = self.vit.patch
        Hp, Wp = math.ceil(H / p) * p, math.ceil(W / p) * p
        if (Hp, Wp) != (H, W):
            x = F.interpolate(x, size=(Hp, Wp), mode="bilinear", align_corners=False)
        with torch.no_grad():
            feats = torch.cat(
                self.vit.intermediate_layers(x, self.layers), dim=1
            )  # [M, 1536, hp, wp]
        return F.interpolate(feats, size=grid_hw, mode="nearest")  # [M, 1536, h, w]
