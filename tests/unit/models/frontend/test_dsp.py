"""Each constant the graph bakes in, held against the library it stands in for."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal
from noisereduce.spectralgate.base import _smoothing_filter

from soundscape.models.frontend import dsp
from soundscape.frontend_params import FEATURES, MANIFEST_KEYS, FeatureParams


def test_mel_filterbank_is_librosas() -> None:
    ours = dsp.mel_filterbank(FEATURES)
    theirs = librosa.filters.mel(sr=32000, n_fft=2048, n_mels=64, fmin=50.0, fmax=14000.0)
    assert ours.shape == (64, 1025)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
    assert dsp.used_bins(ours) == 896  # bins above 14 kHz need no DFT


def test_mask_smoothing_is_noisereduces_kernel() -> None:
    # 500 Hz over 31.25 Hz bins -> 8 bins each side; 50 ms over 8 ms hops -> 6 frames.
    ours = dsp.mask_smoothing_kernel(FEATURES)
    np.testing.assert_allclose(ours, _smoothing_filter(8, 6), atol=1e-15)
    freq, time = dsp.mask_smoothing_factors(FEATURES)
    assert freq.size == 17 and time.size == 13 and freq.sum() == pytest.approx(1.0)


def test_gate_frames_are_scipys_frames_under_noisereduce_padding() -> None:
    layout = dsp.gate_layout(FEATURES)
    d = FEATURES.denoise
    signal = np.random.default_rng(0).standard_normal(FEATURES.samples)
    padded = np.concatenate([np.zeros(d.padding), signal, np.zeros(d.padding)])
    _, _, theirs = scipy.signal.stft(padded, nfft=d.n_fft, noverlap=d.n_fft - d.hop_length,
                                     nperseg=d.n_fft, padded=False)
    assert theirs.shape[1] == layout.total
    ours_padded = np.concatenate([np.zeros(layout.left_pad), signal, np.zeros(layout.right_pad)])
    frames = np.lib.stride_tricks.sliding_window_view(ours_padded, d.n_fft)[:: d.hop_length]
    window = dsp.hann_periodic(d.n_fft)
    ours = np.fft.rfft(frames * window, axis=-1).T / window.sum()
    assert ours.shape[1] == layout.count
    np.testing.assert_allclose(ours, theirs[:, layout.first : layout.first + layout.count],
                               atol=1e-12)
    # Every frame outside the computed range is silent: nothing is left out.
    assert not np.any(theirs[:, : layout.first])
    assert not np.any(theirs[:, layout.first + layout.count :])


def test_closed_form_noise_floor_is_scipys_filtfilt() -> None:
    layout = dsp.gate_layout(FEATURES)
    smooth = dsp.smoother(FEATURES)
    x = np.zeros((4, layout.total))
    inside = slice(layout.first, layout.first + layout.count)
    x[:, inside] = np.random.default_rng(1).random((4, layout.count))
    t_frames = 2.0 * 32000 / 256
    b = (np.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    theirs = scipy.signal.filtfilt([b], [1, b - 1], x, axis=-1, padtype=None)
    ours = smooth.apply(x[:, layout.first : layout.first + layout.count])
    np.testing.assert_allclose(ours, theirs[:, layout.first : layout.first + layout.count],
                               rtol=1e-10)


def test_frame_segments_cover_every_frame_once() -> None:
    onehot = dsp.frame_segments(FEATURES, FEATURES.augment)
    assert onehot.shape == (313, 10) and np.all(onehot.sum(axis=1) == 1)
    # Frame centres fall every 32 ms: 31 or 32 per second, the last (9.984 s) in second 9.
    assert onehot.sum(axis=0).tolist() == [32, 31, 31, 31, 32, 31, 31, 31, 32, 31]


def test_band_bins_are_two_to_eight_kilohertz() -> None:
    band = dsp.band_bins(FEATURES, FEATURES.augment)
    freqs = np.flatnonzero(band) * 32000 / 2048
    assert freqs[0] == 2000 and freqs[-1] == 8000


def test_params_validate_and_the_manifest_is_the_contracts() -> None:
    with pytest.raises(ValueError, match="frames"):
        FeatureParams(frames=300)
    with pytest.raises(ValueError, match="fmax"):
        FeatureParams(fmax=20000)
    manifest = FEATURES.manifest()
    assert tuple(manifest) == MANIFEST_KEYS
    assert manifest == {"sample_rate": 32000, "samples": 320000, "n_fft": 2048,
                        "hop_length": 1024, "n_mels": 64, "frames": 313, "fmin": 50.0,
                        "fmax": 14000.0, "top_db": 80.0}
    assert FEATURES.details()["denoise"]["prop_decrease"] == 0.9
