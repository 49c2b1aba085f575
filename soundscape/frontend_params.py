"""The front-end's parameters: one frozen record shared by the ONNX graph, the CPU
reference, the parity checks and the bundle manifest, so the three can never drift apart.

The values are the seed's recipe (noisereduce's non-stationary spectral gate with
prop_decrease 0.9, librosa's mel at n_fft 2048 / hop 1024 / 64 bands, dB relative to the
maximum with top_db 80) plus the choices the seed left open (fmin, fmax, the augmented
mel's definition); docs/frontend.md gives the reasons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DenoiseParams:
    """noisereduce.reduce_noise(stationary=False) with the seed's prop_decrease.

    `padding` is noisereduce's own zero padding around each chunk it filters: its
    zeros pull the running noise floor down near the chunk's edges, so the graph
    reproduces it instead of ignoring it.
    """

    prop_decrease: float = 0.9
    n_fft: int = 1024
    hop_length: int = 256
    time_constant_s: float = 2.0
    freq_mask_smooth_hz: float = 500.0
    time_mask_smooth_ms: float = 50.0
    thresh_n_mult: float = 2.0
    sigmoid_slope: float = 10.0
    padding: int = 30_000


@dataclass(frozen=True)
class AugmentParams:
    """The augmented mel: the band where most calls live, boosted by `boost_db` in the
    seconds where calls are. A second counts as calling by how much of its band energy
    survives denoising: the gate cuts noise to about -20 dB and lets calls through, so
    the share is near 0 dB with calls and near -20 dB without, whatever the noise level
    does (gusts, rain). The decision is soft (a sigmoid around `presence_db`), so tiny
    numeric differences never flip a whole second."""

    band_low_hz: float = 2000.0
    band_high_hz: float = 8000.0
    boost_db: float = 6.0
    presence_db: float = -10.0
    presence_slope_db: float = 1.5
    segment_s: float = 1.0


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 32_000
    samples: int = 320_000
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 64
    frames: int = 313
    fmin: float = 50.0
    fmax: float = 14_000.0
    top_db: float = 80.0
    amin: float = 1e-10
    #: Peaks below this (a fraction of one 16-bit step) count as silence, not as a
    #: signal to blow up to full scale.
    peak_floor: float = 1e-6
    remove_dc: bool = True
    denoise: DenoiseParams = field(default_factory=DenoiseParams)
    augment: AugmentParams = field(default_factory=AugmentParams)

    def __post_init__(self) -> None:
        if self.frames != 1 + self.samples // self.hop_length:
            raise ValueError(
                f"frames {self.frames} != 1 + samples // hop_length "
                f"({1 + self.samples // self.hop_length})"
            )
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2}")

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def manifest(self) -> dict[str, Any]:
        """The `features` entry of bundle.json: the contract's keys only."""
        return {key: getattr(self, key) for key in MANIFEST_KEYS}

    def details(self) -> dict[str, Any]:
        """Every parameter, nested sections included (stored in frontend.onnx's metadata)."""
        return asdict(self)


#: The feature parameters bundle.json records (docs/architecture.md, the bundle contract).
MANIFEST_KEYS = (
    "sample_rate", "samples", "n_fft", "hop_length", "n_mels", "frames", "fmin", "fmax", "top_db",
)
FEATURES = FeatureParams()
