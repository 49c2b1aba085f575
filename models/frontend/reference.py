"""The CPU reference front-end: the seed's recipe with noisereduce and librosa.

It is what the ONNX graph is checked against (parity) and what it is timed against
(bench). The steps the seed left undefined (input repair, silence, the augmented mel)
follow the same definitions as the graph; docs/frontend.md lists them.
"""

from __future__ import annotations

import warnings

import librosa
import noisereduce
import numpy as np

from soundscape.models.frontend import dsp
from soundscape.frontend_params import FEATURES, FeatureParams


def sanitise(pcm: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """NaN -> 0, clip to [-1, 1], remove the DC offset: the graph's first three steps."""
    x = np.clip(np.nan_to_num(np.asarray(pcm, dtype=np.float32), nan=0.0), -1.0, 1.0)
    if params.remove_dc:
        x = x - np.float32(x.mean(dtype=np.float64))
    return x.astype(np.float32)


def denoise(x: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """noisereduce's non-stationary spectral gate (it returns NaN for digital silence,
    which has no noise floor to gate against: silence stays silence here)."""
    if not np.any(x):
        return np.zeros_like(x)
    d = params.denoise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return noisereduce.reduce_noise(
            y=x,
            sr=params.sample_rate,
            stationary=False,
            prop_decrease=d.prop_decrease,
            time_constant_s=d.time_constant_s,
            freq_mask_smooth_hz=d.freq_mask_smooth_hz,
            time_mask_smooth_ms=d.time_mask_smooth_ms,
            thresh_n_mult_nonstationary=d.thresh_n_mult,
            sigmoid_slope_nonstationary=d.sigmoid_slope,
            n_fft=d.n_fft,
            hop_length=d.hop_length,
            padding=d.padding,
            chunk_size=max(params.samples, 600_000),
            n_jobs=1,
        ).astype(np.float32)


def peak(x: np.ndarray, params: FeatureParams = FEATURES) -> float:
    """What peak normalisation divides by: the largest |sample|, floored."""
    return max(float(np.max(np.abs(x))), params.peak_floor)


def _power(signal: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """|librosa.stft|^2, [1 + n_fft // 2, frames]."""
    stft = librosa.stft(signal, n_fft=params.n_fft, hop_length=params.hop_length,
                        window="hann", center=True, pad_mode="constant")
    return np.abs(stft) ** 2


def augment_gain(
    power: np.ndarray, raw_power: np.ndarray, peak: float, params: FeatureParams = FEATURES
) -> np.ndarray:
    """Per-frame power gain of the boosted band ([frames]): by second, the share of the
    band's energy (raw input -> denoised) that survived the gate."""
    a = params.augment
    onehot = dsp.frame_segments(params, a)
    per_segment = onehot / onehot.sum(axis=0)
    band = dsp.band_bins(params, a)
    kept = (band @ power) @ per_segment * peak**2
    before = (band @ raw_power) @ per_segment
    level = 10 * np.log10(np.maximum(kept / (before + params.amin), params.amin))
    presence = 1 / (1 + np.exp(-(level - a.presence_db) / a.presence_slope_db))
    gain = 1 + (10 ** (a.boost_db / 20) - 1) * presence
    return onehot @ gain**2


def mels(
    waveform: np.ndarray, raw: np.ndarray, peak: float, params: FeatureParams = FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """librosa mel and augmented mel in dB, each [1, n_mels, frames]."""
    power = _power(waveform, params)
    gain = augment_gain(power, _power(raw, params), peak, params)
    band = dsp.band_bins(params, params.augment)[:, None] > 0
    boosted = np.where(band, power * gain[None, :], power)
    images = []
    for spectrum in (power, boosted):
        mel = librosa.feature.melspectrogram(
            S=spectrum,
            sr=params.sample_rate,
            n_fft=params.n_fft,
            n_mels=params.n_mels,
            fmin=params.fmin,
            fmax=params.fmax,
        )
        db = librosa.power_to_db(mel, ref=np.max, amin=params.amin, top_db=params.top_db)
        images.append(db[None].astype(np.float32))
    return images[0], images[1]


def reference_features(pcm: np.ndarray, params: FeatureParams = FEATURES) -> dict[str, np.ndarray]:
    """One prepared chunk (float32 [samples]) -> waveform, mel, mel_aug (no batch axis)."""
    raw = sanitise(pcm, params)
    denoised = denoise(raw, params)
    scale = peak(denoised, params)
    waveform = (denoised / scale).astype(np.float32)
    mel, mel_aug = mels(waveform, raw, scale, params)
    return {"waveform": waveform, "mel": mel, "mel_aug": mel_aug}
