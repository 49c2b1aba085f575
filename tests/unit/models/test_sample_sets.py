"""Calibration and held-out sets: users' .npz files are checked; synthetic sets are
reproducible and calibration never shares a clip with held-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundscape.bundle import BundleFeatures
from soundscape.errors import UserError
from soundscape.models.samples import (
    CALIBRATION_SEED,
    HELD_OUT_SEED,
    load_set,
    sample_set,
    synthetic_pcm,
)

FEATURES = BundleFeatures()


def _arrays(n: int = 2) -> dict[str, np.ndarray]:
    return {"waveform": np.zeros((n, 320_000), np.float32),
            "mel": np.full((n, 1, 64, 313), -40.0, np.float32),
            "mel_aug": np.full((n, 1, 64, 313), -34.0, np.float32)}


def test_a_users_npz_is_read(tmp_path: Path) -> None:
    np.savez(tmp_path / "cal.npz", **_arrays(3))
    samples = sample_set(tmp_path / "cal.npz", 99, 0, FEATURES)
    assert len(samples) == 3 and samples.source == "3 items from cal.npz"
    assert [len(part["mel"]) for part in samples.batches(2)] == [2, 1]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("mel_aug"), r"lacks the arrays \['mel_aug'\]"),
    (lambda a: a.update(mel=np.zeros((2, 64, 313), np.float32)), r"mel has shape \[2, 64, 313\]"),
    (lambda a: a["waveform"].__setitem__((1, 5), np.nan), "waveform holds NaN or Inf"),
    (lambda a: a.update(waveform=np.zeros((1, 320_000), np.float32)), "same, non-zero number"),
])
def test_a_bad_npz_is_refused(tmp_path: Path, change, message: str) -> None:
    arrays = _arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        load_set(tmp_path / "bad.npz", FEATURES)
    (tmp_path / "junk.npz").write_text("no")
    with pytest.raises(UserError, match="cannot read it as .npz"):
        load_set(tmp_path / "junk.npz", FEATURES)


def test_synthetic_clips_are_reproducible_and_disjoint() -> None:
    a = synthetic_pcm(2, CALIBRATION_SEED, FEATURES)
    assert a.shape == (2, 320_000) and a.dtype == np.float32
    assert np.abs(a).max(axis=1) == pytest.approx([1.0, 1.0])  # peak-normalised
    np.testing.assert_array_equal(a, synthetic_pcm(2, CALIBRATION_SEED, FEATURES))
    assert not np.allclose(a[0], synthetic_pcm(1, HELD_OUT_SEED, FEATURES)[0])
