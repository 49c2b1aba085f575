"""Streaming resampling keeps every sample, the pitch, and the time of the output."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.producers.blocks import Block, downmix
from soundscape.producers.resample import StreamResampler

T0 = 1_714_541_400 * 10**9


@pytest.mark.parametrize("rate", [48_000, 44_100, 96_000, 22_050])
def test_stream_output_has_the_exact_length_and_pitch(rate: int) -> None:
    seconds = 12
    t = np.arange(rate * seconds) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    resampler = StreamResampler(rate)
    rng = np.random.default_rng(1)
    out, pos = [], 0
    while pos < tone.size:
        size = int(rng.integers(100, rate // 2))
        out.append(resampler.process(Block(tone[pos : pos + size], rate)).samples)
        pos += size
    out.append(resampler.flush())
    audio = np.concatenate(out)
    assert audio.size == seconds * 32_000
    spectrum = np.abs(np.fft.rfft(audio[32_000:64_000]))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # 1 s window: 1 Hz bins


def test_block_times_are_mapped_to_the_output() -> None:
    resampler = StreamResampler(48_000)
    first = resampler.process(Block(np.zeros(4800, np.float32), 48_000, T0))
    assert first.start_ns == T0
    second = resampler.process(Block(np.zeros(4800, np.float32), 48_000, T0 + 100_000_000))
    # The output of the second call starts where the first call's output ended.
    assert second.start_ns == T0 + first.frames * 31_250


def test_matching_rate_passes_samples_through() -> None:
    audio = np.linspace(-1, 1, 1000, dtype=np.float32)
    out = StreamResampler(32_000).process(Block(audio, 32_000, T0))
    np.testing.assert_array_equal(out.samples, audio)
    assert out.start_ns == T0


def test_downmix_averages_channels_and_scales_int16() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(downmix(stereo), [0.5, 0.5])
    np.testing.assert_allclose(downmix(np.array([16384, -32768], np.int16)), [0.5, -1.0])


def test_wrong_rate_block_is_refused() -> None:
    with pytest.raises(ValueError, match="44100"):
        StreamResampler(48_000).process(Block(np.zeros(10, np.float32), 44_100))
