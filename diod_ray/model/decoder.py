"""The reference's transposed-convolution decoder: slots_combine [M, D, h, w] -> RGB [M, 3, 4h, 4w].

slots_combine = sum_k slot_k * attn_k(pixel). Six ConvTranspose2d with ReLU between them:
k4 s2 p1 (x2), k5 s1 p2, k5 s1 p2, k4 s2 p1 (x2), k5 s1 p2, k3 s1 p1 -> 3 channels.
"""

from __future__ import annotations

from torch import Tensor, nn

# (kernel, stride, padding) per layer, docs/reference-notes.md §2 "Decoder"
LAYERS = ((4, 2, 1), (5, 1, 2), (5, 1, 2), (4, 2, 1), (5, 1, 2), (3, 1, 1))


class Decoder(nn.Module):
    def __init__(self, slot_dim: int, channels: int = 64, out_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = slot_dim
        for i, (k, s, p) in enumerate(LAYERS):
            last = i == len(LAYERS) - 1
            layers.append(nn.ConvTranspose2d(c_in, out_channels if last else channels, k, s, p))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            c_in = channels
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """x [M, D, h, w] -> [M, 3, H, W], cropped from [M, 3, 4h, 4w]."""
        H, W = out_hw
        return self.net(x)[..., :H, :W]
