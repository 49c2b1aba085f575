"""The constants the ONNX front-end bakes in, computed with numpy alone.

Each one is the exact counterpart of something librosa or noisereduce computes at run
time (the Slaney mel filterbank, noisereduce's mask-smoothing kernel, where its STFT
frames fall, its IIR noise-floor smoother in closed form), so the graph needs neither
library and the unit tests can hold each constant against the library it mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundscape.frontend_params import DenoiseParams, FeatureParams


# One definition, in the core: soundscape.frontend_fft computes the same front-end.
from soundscape.frontend_fft import band_bins, frame_segments, used_bins  # noqa: E402


def hann_periodic(length: int) -> np.ndarray:
    """scipy's get_window('hann', N) and librosa's default window (DFT-even)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa, htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = f_sp * mel
    log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log, linear)


def mel_filterbank(params: FeatureParams) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] triangles, Slaney-normalised: librosa.filters.mel's
    defaults, reimplemented so the graph builder does not import librosa."""
    bins = 1 + params.n_fft // 2
    fft_freqs = np.linspace(0, params.sample_rate / 2, bins)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(params.fmin), _hz_to_mel(params.fmax), params.n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def _triangle(n: int) -> np.ndarray:
    ramp = np.concatenate([np.linspace(0, 1, n + 1, endpoint=False), np.linspace(1, 0, n + 2)])
    return ramp[1:-1]


def mask_smoothing_factors(params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """noisereduce's mask-smoothing kernel as its two 1-D factors (freq, time), each
    summing to 1: the kernel is their outer product."""
    d = params.denoise
    n_grad_freq = int(d.freq_mask_smooth_hz / (params.sample_rate / (d.n_fft / 2)))
    n_grad_time = int(d.time_mask_smooth_ms / ((d.hop_length / params.sample_rate) * 1000))
    if n_grad_freq < 1 or n_grad_time < 1:
        raise ValueError("mask smoothing must span at least one bin and one frame")
    freq, time = _triangle(n_grad_freq), _triangle(n_grad_time)
    return freq / freq.sum(), time / time.sum()


def mask_smoothing_kernel(params: FeatureParams) -> np.ndarray:
    """noisereduce's triangular [freq, time] kernel that smooths the gate's mask."""
    freq, time = mask_smoothing_factors(params)
    return np.outer(freq, time)


@dataclass(frozen=True)
class GateLayout:
    """Where noisereduce's STFT frames fall on one chunk.

    noisereduce pads the chunk with `padding` zeros each side, scipy's STFT adds
    n_fft // 2 more, and frames start every hop. Only frames `first`..`first+count-1`
    touch the chunk; the graph computes just those, starting `left_pad` samples before
    the chunk's first sample. `tail` all-zero frames follow them, and their effect on
    the backward smoothing pass is the constant `tail_gain`.
    """

    first: int
    count: int
    total: int
    left_pad: int
    right_pad: int
    tail: int


def gate_layout(params: FeatureParams) -> GateLayout:
    d = params.denoise
    if d.padding + d.n_fft // 2 < d.n_fft:
        raise ValueError("the gate needs at least one all-zero frame before the chunk")
    start = d.padding + d.n_fft // 2  # first chunk sample in the padded signal
    padded = params.samples + 2 * start
    total = (padded - d.n_fft) // d.hop_length + 1
    first = (start - d.n_fft) // d.hop_length + 1
    last = min((start + params.samples - 1) // d.hop_length, total - 1)
    count = last - first + 1
    left_pad = start - first * d.hop_length
    right_pad = (count - 1) * d.hop_length + d.n_fft - left_pad - params.samples
    return GateLayout(first, count, total, left_pad, right_pad, total - 1 - last)


@dataclass(frozen=True)
class Smoother:
    """noisereduce's noise floor: scipy filtfilt([b], [1, b - 1]) along time, i.e. a
    one-pole low-pass run forwards then backwards with steady-state initial conditions.

    Because every frame before the chunk is zero, the forward pass starts from rest,
    and the backward pass starts `tail` zero frames after the last chunk frame; both
    then have closed forms as weighted cumulative sums, which is what the graph runs
    (CumSum exists on every execution provider; an IIR does not).
    """

    beta: float
    tail_gain: float
    count: int

    @property
    def r(self) -> float:
        return 1.0 - self.beta

    def forward_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """y[n] = post[n] * cumsum(pre * x)[n]."""
        n = np.arange(self.count, dtype=np.float64)
        return self.r ** (-n), self.beta * self.r**n

    def backward_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """z[n] = post[n] * reverse_cumsum(pre * y)[n]."""
        n = np.arange(self.count, dtype=np.float64)
        pre = self.beta * self.r**n
        pre[-1] = self.tail_gain * self.r ** (self.count - 1)
        return pre, self.r ** (-n)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The closed form in numpy along the last axis (what the graph computes)."""
        pre, post = self.forward_weights()
        y = post * np.cumsum(pre * x, axis=-1)
        pre, post = self.backward_weights()
        return post * np.cumsum((pre * y)[..., ::-1], axis=-1)[..., ::-1]


def smoother(params: FeatureParams) -> Smoother:
    d = params.denoise
    layout = gate_layout(params)
    t_frames = d.time_constant_s * params.sample_rate / float(d.hop_length)
    beta = (np.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)
    r = 1.0 - beta
    # Backward pass through the zero tail: there the forward output decays as r^j.
    z = r**layout.tail  # steady-state start: z equals the last input
    for j in range(layout.tail - 1, 0, -1):
        z = beta * r**j + r * z
    tail_gain = beta + r * z if layout.tail else 1.0
    return Smoother(beta=float(beta), tail_gain=float(tail_gain), count=layout.count)


__all__ = [
    "DenoiseParams",
    "GateLayout",
    "Smoother",
    "band_bins",
    "frame_segments",
    "gate_layout",
    "hann_periodic",
    "mask_smoothing_factors",
    "mask_smoothing_kernel",
    "mel_filterbank",
    "smoother",
    "used_bins",
]
