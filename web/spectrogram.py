"""A clip's spectrogram as a PNG: what a reviewer looks at while listening.

Drawn from the kept audio (not the model's features), log-frequency-agnostic: a plain
STFT in dB up to 12 kHz, time on x, the detected window shaded where the model gave one.
"""

from __future__ import annotations

import io

import numpy as np


def spectrogram_png(samples: np.ndarray, sample_rate: int,
                    window: tuple[float, float] | None = None,
                    title: str = "", max_hz: float = 12_000.0) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    n_fft, hop = 1024, 256
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    frames = 1 + (mono.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(mono[index] * np.hanning(n_fft), axis=1)) ** 2
    db = 10 * np.log10(np.maximum(spectrum, 1e-12))
    top = min(max_hz, sample_rate / 2)
    bins = int(top / (sample_rate / 2) * (n_fft // 2)) + 1
    db = db[:, :bins]
    vmax = float(db.max())

    figure = Figure(figsize=(10, 3), dpi=100)
    axes = figure.subplots()
    seconds = mono.size / sample_rate
    axes.imshow(db.T, origin="lower", aspect="auto", cmap="magma",
                extent=(0, seconds, 0, top / 1000), vmin=vmax - 80, vmax=vmax)
    if window is not None:
        axes.axvspan(window[0], window[1], color="cyan", alpha=0.18, lw=0)
        axes.axvline(window[0], color="cyan", lw=1)
        axes.axvline(window[1], color="cyan", lw=1)
    axes.set_xlabel("seconds")
    axes.set_ylabel("kHz")
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
