"""Synthetic observations for the drift unit tests: drawn from known distributions, so
a test states exactly what changed (a unique module name: test folders share sys.path)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from soundscape.processors.drift.summary import CHUNK_NS, Observation

LABELS = ("wren", "robin", "tit", "finch", "thrush", "owl", "crow", "dove")
USUAL_MIX = (0.35, 0.25, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01)
NEW_MIX = (0.02, 0.03, 0.05, 0.1, 0.1, 0.2, 0.25, 0.25)


def observations(
    station: str, start: int, count: int, seed: int, *, noise_floor: float = -52.0,
    mix: Sequence[float] = USUAL_MIX, confidence: tuple[float, float] = (6.0, 2.0),
    centroid: float = 2500.0, clipping: float = 0.0, silence: float = 0.05,
    missing: float = 0.0, source: str = "replay",
) -> Iterator[Observation]:
    """`count` chunk slots from `start` (some left out with `missing`)."""
    rng = np.random.default_rng(seed)
    shares = np.array(mix) / np.sum(mix)
    for index in range(count):
        if rng.random() < missing:
            continue
        floor = noise_floor + rng.normal(0, 2.5)
        yield Observation(
            station_id=station, chunk_start=start + index * CHUNK_NS, source=source,
            top_label=str(rng.choice(LABELS, p=shares)),
            top_probability=float(rng.beta(*confidence)),
            rms_dbfs=floor + 12 + rng.normal(0, 3), noise_floor_dbfs=floor,
            clipping_ratio=clipping, silence_ratio=float(np.clip(rng.normal(silence, 0.02), 0, 1)),
            spectral_centroid_hz=float(centroid * rng.lognormal(0, 0.2)),
        )
