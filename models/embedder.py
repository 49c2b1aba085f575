"""A CNN14-style embedder (the PANNs design): log-mel in, a 2048-d clip embedding out.

It takes the front-end's main mel, so the pipeline computes one STFT for everything.
Exported as its own graph (`embedder.onnx`), so a user can swap in their own embedder as
long as it keeps the contract: mel [batch, 1, n_mels, frames] -> embedding [batch, 2048].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBEDDING_DIM = 2048


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch norm + ReLU, then 2x2 average pooling (PANNs' ConvBlock)."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, self.pool) if self.pool != (1, 1) else x


class Cnn14Embedder(nn.Module):
    """Six conv blocks, mean over frequency, max + mean over time, one dense layer."""

    def __init__(self, channels: tuple[int, ...], n_mels: int = 64) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_mels)  # per-mel-bin normalisation, as in PANNs
        blocks = []
        in_channels = 1
        for index, out_channels in enumerate(channels):
            pool = (1, 1) if index == len(channels) - 1 else (2, 2)
            blocks.append(ConvBlock(in_channels, out_channels, pool))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.bn0(mel.transpose(1, 2)).transpose(1, 2)  # [B, 1, mels, frames]
        for block in self.blocks:
            x = F.dropout(block(x), p=0.2, training=self.training)
        x = x.mean(dim=2)  # over frequency: [B, C, frames]
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        return F.relu(self.fc(x))
