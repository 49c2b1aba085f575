from __future__ import annotations

import numpy as np
import pytest

from soundscape.audio_stats import audio_stats

SR = 32000


def tone(freq: float, amplitude: float, seconds: float = 10.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_tone_level_and_centroid() -> None:
    stats = audio_stats(tone(3000, 0.5), SR)
    assert stats.rms_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    assert stats.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.05)
    assert stats.spectral_centroid_hz == pytest.approx(3000, rel=0.02)
    assert stats.clipping_ratio == 0 and stats.silence_ratio == 0


def test_noise_floor_tracks_the_quiet_part() -> None:
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 0.001, SR * 8).astype(np.float32)  # -60 dBFS background
    loud = rng.normal(0, 0.1, SR * 2).astype(np.float32)  # a 2 s call
    stats = audio_stats(np.concatenate([quiet, loud]), SR)
    assert stats.noise_floor_dbfs == pytest.approx(-60, abs=1.0)
    assert stats.rms_dbfs > -30


def test_silence_clipping_and_dc() -> None:
    silent = audio_stats(np.zeros(SR * 10, np.float32), SR)
    assert silent.silence_ratio == 1.0 and silent.rms_dbfs == -200.0
    assert silent.spectral_centroid_hz == 0.0
    clipped = audio_stats(np.clip(tone(440, 2.0), -1, 1), SR)
    assert clipped.clipping_ratio > 0.5
    assert audio_stats(np.full(SR, 0.25, np.float32), SR).dc_offset == pytest.approx(0.25)


def test_short_and_bad_shapes() -> None:
    assert audio_stats(np.full(10, 0.1, np.float32), SR).rms_dbfs == pytest.approx(-20, abs=0.01)
    with pytest.raises(ValueError):
        audio_stats(np.zeros((2, 2), np.float32), SR)


def test_hostile_samples_are_measured_not_fatal() -> None:
    """NaN counts as silence, +-Inf and overs as full scale; the caller's array is left as
    it was."""
    x = np.full(SR, 0.1, np.float32)
    x[:100] = np.nan
    x[100:150] = np.inf
    x[150:200] = -np.inf
    x[200:300] = 4.0
    given = x.copy()
    stats = audio_stats(x, SR)
    np.testing.assert_array_equal(x, given)
    assert stats.clipping_ratio == pytest.approx(200 / SR)
    assert stats.peak_dbfs == pytest.approx(0.0)
    clean = np.full(SR, 0.1, np.float32)
    clean[:100] = 0.0
    clean[100:150] = 1.0
    clean[150:200] = -1.0
    clean[200:300] = 1.0
    want = float(np.mean(clean.astype(np.float64) ** 2))
    assert stats.rms_dbfs == pytest.approx(10 * np.log10(want), abs=1e-6)
    assert stats.dc_offset == pytest.approx(float(np.mean(clean)), abs=1e-6)
    assert all(np.isfinite(v) for v in stats.model_dump().values())
