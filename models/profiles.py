"""Sizes of the fusion model's branches: the seed's full size, and a small profile for tests.

Both profiles take and give the same shapes (the bundle contract); the small one has far
fewer parameters, so exports, quantization and parity checks run in seconds on a CPU.
Plain data, no torch: the CLI lists profiles without importing PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The seed's label set: BirdCLEF 2025.
DEFAULT_NUM_CLASSES = 206


@dataclass(frozen=True)
class Profile:
    """Widths and depths of every branch; shapes in and out never depend on them."""

    name: str
    # CNN14-style embedder: channels of its six conv blocks; its output is always 2048-d.
    embedder_channels: tuple[int, ...]
    # Embedding classifier MLP: hidden widths between the 2048-d embedding and C.
    embed_hidden: tuple[int, ...]
    # ResNet50: stem width and bottleneck blocks per stage.
    resnet_width: int
    resnet_blocks: tuple[int, int, int, int]
    # EfficientNet-B3: width and depth multipliers over B0's stages (B3: 1.2 and 1.4).
    effnet_width: float
    effnet_depth: float
    # Raw-waveform CNN: channels of its four convolutions.
    wave_channels: tuple[int, int, int, int]
    # Meta MLP over the four branches' sigmoids: hidden widths.
    meta_hidden: tuple[int, ...]
    # LoRA adapters of the EfficientNet branch.
    lora_rank: int = 12
    lora_alpha: float = 24.0


FULL = Profile(
    name="full",
    embedder_channels=(64, 128, 256, 512, 1024, 2048),
    embed_hidden=(2048, 1024, 512),
    resnet_width=64,
    resnet_blocks=(3, 4, 6, 3),
    effnet_width=1.2,
    effnet_depth=1.4,
    wave_channels=(16, 32, 64, 128),
    meta_hidden=(1024, 512),
)

SMALL = Profile(
    name="small",
    embedder_channels=(8, 16, 16, 32, 32, 64),
    embed_hidden=(64, 32),
    resnet_width=8,
    resnet_blocks=(1, 1, 1, 1),
    effnet_width=0.25,
    effnet_depth=0.25,
    wave_channels=(4, 8, 8, 16),
    meta_hidden=(64,),
    lora_rank=4,
    lora_alpha=8.0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (FULL, SMALL)}
