"""Downmix and resample a stream of blocks to the model rate, keeping filter state.

A station whose device offers only 44.1 or 48 kHz resamples on the Pi with soxr (small,
fast, no PyTorch or librosa). The resampler holds back a few milliseconds of output for
its filter; block times are mapped through the sample counts, so the chunker sees the
measured time of each *output* block, not of the input block it came from.
"""

from __future__ import annotations

import numpy as np

from soundscape.producers.blocks import Block, downmix, samples_to_ns
from soundscape.producers.chunker import MODEL_RATE


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int = MODEL_RATE, quality: str = "HQ") -> None:
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
            )
        self.frames_in = 0
        self.frames_out = 0

    def process(self, block: Block, last: bool = False) -> Block:
        """Mono float32 at `out_rate`; `last` flushes what the filter holds back."""
        if block.sample_rate != self.in_rate:
            raise ValueError(f"block at {block.sample_rate} Hz fed to a {self.in_rate} Hz stream")
        mono = downmix(block.samples)
        start = None
        if block.start_ns is not None:
            # Output sample `frames_out` sits this much before the input block's first sample.
            held_back = samples_to_ns(self.frames_in, self.in_rate) - samples_to_ns(
                self.frames_out, self.out_rate
            )
            start = block.start_ns - held_back
        if self._stream is None:
            out = mono
        else:
            out = self._stream.resample_chunk(np.ascontiguousarray(mono), last=last)
        self.frames_in += mono.size
        self.frames_out += out.size
        return Block(out, self.out_rate, start, block.lost_before)

    def flush(self) -> np.ndarray:
        """What the filter still holds at the end of a stream (empty without resampling)."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        out = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self.frames_out += out.size
        return out
