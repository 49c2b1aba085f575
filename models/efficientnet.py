"""EfficientNet-B3 with LoRA adapters, for the mel (1 x 64 x 313).

The torchvision layout of EfficientNet (MBConv blocks with squeeze-and-excitation, B0's
stages scaled by width 1.2 and depth 1.4 for B3). LoRA adapters (rank 12, alpha 24 at full
size) sit on the pointwise expansion, depthwise, projection and head convolutions; they
are merged into those convolutions before export.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from soundscape.models.lora import LoRAConv2d

#: EfficientNet-B0's stages: expand ratio, kernel, stride, in and out channels, layers.
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding, so widths match the published B3."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * scale


class MBConv(nn.Module):
    """Inverted residual: expand (1x1), depthwise (kxk), squeeze-excite, project (1x1)."""

    def __init__(
        self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int,
        drop: float, rank: int, alpha: float,
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.residual = stride == 1 and in_ch == out_ch
        self.drop = drop
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [LoRAConv2d(in_ch, mid, 1, rank=rank, alpha=alpha),
                       nn.BatchNorm2d(mid), nn.SiLU(inplace=True)]
        layers += [
            LoRAConv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid,
                       rank=rank, alpha=alpha),
            nn.BatchNorm2d(mid), nn.SiLU(inplace=True),
            SqueezeExcite(mid, max(1, in_ch // 4)),
            LoRAConv2d(mid, out_ch, 1, rank=rank, alpha=alpha),
            nn.BatchNorm2d(out_ch),
        ]
        self.block = nn.Sequential(*layers)

    def residual_norm(self) -> nn.BatchNorm2d | None:
        """The norm ending the residual branch, if the block has a skip connection."""
        return self.block[-1] if self.residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.residual:
            return out
        if self.training and self.drop > 0:  # stochastic depth, per sample
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop
            out = out * keep / (1 - self.drop)
        return out + x


class EfficientNetLoRA(nn.Module):
    """EfficientNet (B3 at width 1.2, depth 1.4) with LoRA adapters, one input channel."""

    def __init__(
        self,
        num_classes: int,
        width: float = 1.2,
        depth: float = 1.4,
        rank: int = 12,
        alpha: float = 24.0,
        in_channels: int = 1,
        stochastic_depth: float = 0.2,
    ) -> None:
        super().__init__()
        stem = make_divisible(32 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem), nn.SiLU(inplace=True),
        )
        stages = [(e, k, s, make_divisible(i * width), make_divisible(o * width),
                   int(math.ceil(n * depth))) for e, k, s, i, o, n in B0_STAGES]
        total = sum(stage[-1] for stage in stages)
        blocks: list[nn.Module] = []
        for expand, kernel, stride, in_ch, out_ch, layers in stages:
            for layer in range(layers):
                drop = stochastic_depth * len(blocks) / total
                blocks.append(MBConv(in_ch if layer == 0 else out_ch, out_ch, expand, kernel,
                                     stride if layer == 0 else 1, drop, rank, alpha))
        self.blocks = nn.Sequential(*blocks)
        last_in = stages[-1][4]
        features = 4 * last_in
        self.head = nn.Sequential(
            LoRAConv2d(last_in, features, 1, rank=rank, alpha=alpha),
            nn.BatchNorm2d(features), nn.SiLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(x.mean((2, 3))))
