"""Field-like test audio made from a seed: the same seed always gives the same samples.

Used by the demo, the tests and benchmarks wherever real recordings are not at hand.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 32_000
CHUNK_SECONDS = 10


def pink_noise(rng: np.random.Generator, frames: int) -> np.ndarray:
    """1/f noise (wind-like), unit RMS, shaped in the frequency domain."""
    spectrum = rng.standard_normal(frames // 2 + 1) + 1j * rng.standard_normal(frames // 2 + 1)
    freqs = np.arange(frames // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=frames)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def chirp(
    rng: np.random.Generator,
    sample_rate: int,
    seconds: float,
    f_low: float,
    f_high: float,
) -> np.ndarray:
    """A frequency-modulated whistle with a smooth onset and decay."""
    t = np.arange(int(seconds * sample_rate), dtype=np.float64) / sample_rate
    sweep = f_low + (f_high - f_low) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t))
    phase = 2 * np.pi * np.cumsum(sweep) / sample_rate
    envelope = np.sin(np.pi * t / seconds) ** 2
    return (envelope * np.sin(phase)).astype(np.float32)


def field_chunk(
    seed: int,
    sample_rate: int = SAMPLE_RATE,
    seconds: int = CHUNK_SECONDS,
    noise_dbfs: float = -36.0,
    calls: int = 3,
) -> np.ndarray:
    """Mono float32 audio: pink background at `noise_dbfs` plus a few bird-like calls.

    At the defaults a 10 s chunk encodes to roughly 400 KB of FLAC, the size of real
    field audio (the noise floor, not the calls, decides FLAC's size).
    """
    rng = np.random.default_rng(seed)
    frames = sample_rate * seconds
    audio = pink_noise(rng, frames) * np.float32(10 ** (noise_dbfs / 20))
    audio += rng.standard_normal(frames).astype(np.float32) * np.float32(
        10 ** ((noise_dbfs - 6) / 20)
    )
    for _ in range(calls):
        length = rng.uniform(0.3, 1.5)
        start = int(rng.uniform(0, seconds - length) * sample_rate)
        f_low = rng.uniform(1500, 5000)
        call = chirp(rng, sample_rate, length, f_low, f_low * rng.uniform(1.2, 1.8))
        audio[start : start + call.size] += call * np.float32(10 ** (rng.uniform(-24, -8) / 20))
    return np.clip(audio, -1.0, 1.0)
