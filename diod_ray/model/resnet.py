"""ResNet-18 trunk at output stride 4 (reference ``models/resnet.py``, random init).

7x7 stride-2 stem, **no max-pool**, layer1 stride 1, layer2 stride 2, layer3 and layer4 stride 1.
With ``width=64`` this is ResNet-18 without avgpool/fc (512 output channels, about 11.2 M
parameters); smaller widths give the CPU presets.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock


class StridedPointwiseConv(nn.Conv2d):
    """1x1 convolution with stride s computed as subsampling then a stride-1 1x1 conv.

    Same parameters and result as ``nn.Conv2d(c_in, c_out, 1, stride=s)``. It exists because the
    oneDNN CPU kernel of torch 2.14.1 corrupts memory (``double free or corruption``) in the
    backward pass of a strided 1x1 conv on a channels_last input, which is what the trunk sees
    when the training loop converts the model (or gets an NHWC-strided clip).
    """

    def forward(self, x: Tensor) -> Tensor:
        sh, sw = self.stride
        return F.conv2d(x[..., ::sh, ::sw], self.weight, self.bias)


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            StridedPointwiseConv(inplanes, planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetTrunk(nn.Module):
    """[N, 3, H, W] -> [N, 8 * width, ceil(H/4), ceil(W/4)]."""

    def __init__(self, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if width < 1:
            raise ValueError(f"model.trunk_width must be >= 1, got {width}")
        self.out_channels = 8 * width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _layer(width, width, blocks[0], stride=1)
        self.layer2 = _layer(width, 2 * width, blocks[1], stride=2)
        self.layer3 = _layer(2 * width, 4 * width, blocks[2], stride=1)
        self.layer4 = _layer(4 * width, 8 * width, blocks[3], stride=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # [N, w, H/2, W/2] (no max-pool)
        x = self.layer1(x)  # [N, w, H/2, W/2]
        x = self.layer2(x)  # [N, 2w, H/4, W/4]
        x = self.layer3(x)  # [N, 4w, H/4, W/4]
        return self.layer4(x)  # [N, 8w, H/4, W/4]


def stride4_size(size: int) -> int:
    """Spatial size after the trunk: ceil(ceil(size / 2) / 2) = ceil(size / 4)."""
    return -(-size // 4)
