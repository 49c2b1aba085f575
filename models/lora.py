"""LoRA adapters for convolutions, and merging them into plain convolutions for export.

The adapted weight is W + (alpha / r) * B @ A with A: r x (fan-in) and B: out x r, so a
fine-tune trains a few hundred thousand numbers instead of the whole EfficientNet. At
export the product is folded into W: the ONNX graph is an ordinary convolution, with no
cost at inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRAConv2d(nn.Conv2d):
    """A convolution with a frozen base weight and a trainable low-rank update."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        rank: int,
        alpha: float,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size,
            stride=stride, padding=padding, groups=groups, bias=bias,
        )
        fan_in = (in_channels // groups) * kernel_size * kernel_size
        self.lora_a = nn.Parameter(torch.empty(rank, fan_in))
        self.lora_b = nn.Parameter(torch.zeros(out_channels, rank))  # starts as a no-op
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / rank
        self.weight.requires_grad_(False)

    def delta(self) -> torch.Tensor:
        return (self.lora_b @ self.lora_a).view_as(self.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight + self.delta(), self.bias)

    def merged(self) -> nn.Conv2d:
        """A plain convolution computing exactly what this one computes."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size,
            stride=self.stride, padding=self.padding, groups=self.groups,
            bias=self.bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(self.weight + self.delta())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv.to(self.weight.device)


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRAConv2d in `model` by its merged convolution; returns how many.

    The merged module keeps the adapter's place and parameter names (`weight`, `bias`), so
    the state dict of a merged model loads into a model built without adapters.
    """
    merged = 0
    for name, child in list(model.named_children()):
        if isinstance(child, LoRAConv2d):
            setattr(model, name, child.merged())
            merged += 1
        else:
            merged += merge_lora(child)
    return merged
