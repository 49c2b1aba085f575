"""The raw-waveform branch: a 1-D CNN on the 320,000 denoised samples of a 10 s chunk.

It sees what the mel discards (phase, fine timing, clicks), at a small cost: the first
convolution strides by 4 and is max-pooled by 4, so later layers run on 1/16 of the rate.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv1d(in_channels, out_channels, 15, stride=stride, padding=7, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(inplace=True),
    ]


class WaveCnn(nn.Module):
    """conv 1->c0 k15 s4, max-pool 4, then c0->c1->c2->c3 k15 s2, average pool, linear."""

    def __init__(self, channels: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.features = nn.Sequential(
            *_conv(1, c0, 4),
            nn.MaxPool1d(4),
            *_conv(c0, c1, 2),
            *_conv(c1, c2, 2),
            *_conv(c2, c3, 2),
            nn.AdaptiveAvgPool1d(1),
        )
        self.head = nn.Linear(c3, num_classes)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(waveform.unsqueeze(1)).flatten(1))
