"""A block of captured or decoded audio on its way to becoming chunks.

Sources (microphone, files, synthetic) yield blocks; the resampler maps them to the
model rate; the chunker cuts them into exact 10 s chunks. The two time fields carry what
the chunker needs to keep chunks gapless and honest: when the block's first sample was
recorded (as measured), and whether audio is known to be missing right before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Block:
    #: float32, (frames,) mono or (frames, channels)
    samples: np.ndarray
    sample_rate: int
    #: measured UTC time (ns) of the first sample; None: it follows the previous block exactly
    start_ns: int | None = None
    #: samples were lost right before this block (overrun, restart, a gap between files)
    lost_before: bool = False

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def samples_to_ns(samples: int, sample_rate: int) -> int:
    """Duration of `samples` in ns, exact for rates dividing 1e9 (32 kHz: 31,250 ns each)."""
    return samples * 1_000_000_000 // sample_rate


def downmix(samples: np.ndarray) -> np.ndarray:
    """Mono float32: channels averaged, so a stereo recorder does not clip when summed."""
    array = np.asarray(samples)
    if array.ndim == 2:
        array = array[:, 0] if array.shape[1] == 1 else array.mean(axis=1)
    if array.dtype == np.int16:
        return array.astype(np.float32) / np.float32(32768.0)
    return array.astype(np.float32, copy=False)
