"""Runtime (ONNX) against reference (noisereduce + librosa) on real-world-like audio.

Each case is a chunk a field station can really send: calls over wind, rain, hum or a
silent recorder, pure noise, digital silence, tones, clipping, a DC offset, int16 PCM,
a few NaNs, a chunk a few ms short; and chunks the front-end must refuse (all NaN, too
short, too long, mostly NaN, stereo). Both forms must agree on every feature within
TOLERANCES, produce only finite numbers, and refuse the same chunks with the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from soundscape.frontend_inputs import ChunkError, prepare_chunk
from soundscape.frontend_params import FEATURES, FeatureParams
from soundscape.models.frontend.reference import reference_features
from soundscape.models.frontend.runtime import FrontEnd
from soundscape.synthetic import soundscape_chunk

#: Largest allowed |runtime - reference| per feature: the waveform in full-scale units
#: (peak 1.0; 1e-4 is -80 dB), the mels in dB. Measured differences are ~10x smaller;
#: they come from float32 (runtime) against float64 (noisereduce) arithmetic.
TOLERANCES: dict[str, float] = {"waveform": 1e-4, "mel": 0.05, "mel_aug": 0.05}
FEATURE_NAMES = tuple(TOLERANCES)


@dataclass(frozen=True)
class ParityCase:
    name: str
    description: str
    audio: np.ndarray
    expect_error: bool = False


def parity_cases(seed: int = 0, params: FeatureParams = FEATURES) -> list[ParityCase]:
    n, sr = params.samples, params.sample_rate
    t = np.arange(n) / sr

    def calls(background: str, offset: int = 0) -> np.ndarray:
        return soundscape_chunk(seed + offset, background_kind=background, max_species=3,
                                species=None).audio

    base = soundscape_chunk(seed, background_kind="pink-wind",
                            species=("rising-whistle", "fast-trill", "low-hoot")).audio
    few_nan = base.copy()
    few_nan[np.random.default_rng(seed).integers(0, n, 40)] = np.nan
    few_nan[:8] = np.inf
    mostly_nan = base.copy()
    mostly_nan[: n // 20] = np.nan
    return [
        ParityCase("calls-wind", "three species over gusty pink wind", base),
        ParityCase("calls-rain", "random species over brown rain with drops",
                   calls("brown-rain", 1)),
        ParityCase("calls-hum", "random species over distant mains hum", calls("distant-hum", 2)),
        ParityCase("calls-quiet", "random species over a -90 dBFS recorder floor",
                   soundscape_chunk(seed + 3, background_kind="silence",
                                    species=("warbler", "cicada")).audio),
        ParityCase("noise", "wind only, no species",
                   soundscape_chunk(seed + 4, background_kind="pink-wind", species=()).audio),
        ParityCase("silence", "digital silence", np.zeros(n, np.float32)),
        ParityCase("tones", "1 kHz and 5.5 kHz sines at -12 dBFS",
                   (0.125 * (np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 5500 * t)))
                   .astype(np.float32)),
        ParityCase("clipping", "the wind chunk 40x too loud, clipped at full scale",
                   np.clip(base * 40, -1, 1)),
        ParityCase("dc-offset", "the wind chunk on a +0.25 DC offset", base + np.float32(0.25)),
        ParityCase("dc-only", "a stuck converter: +0.3 and nothing else",
                   np.full(n, 0.3, np.float32)),
        ParityCase("int16", "the wind chunk as int16 PCM", np.round(base * 32767).astype(np.int16)),
        ParityCase("few-nan", "40 NaN and 8 Inf samples (repaired as zeros)", few_nan),
        ParityCase("5ms-short", "160 samples short (zero-padded)", base[: n - 160]),
        ParityCase("all-nan", "nothing but NaN", np.full(n, np.nan, np.float32), True),
        ParityCase("too-short", "4 s instead of 10 s", base[: 4 * sr], True),
        ParityCase("too-long", "12 s instead of 10 s",
                   np.concatenate([base, base[: 2 * sr]]), True),
        ParityCase("mostly-nan", "5% NaN", mostly_nan, True),
        ParityCase("stereo", "two channels", np.stack([base, base]), True),
    ]


@dataclass
class CaseResult:
    name: str
    description: str
    error: str | None = None
    reference_error: str | None = None
    max_diff: dict[str, float] = field(default_factory=dict)
    worst_at: dict[str, tuple[int, ...]] = field(default_factory=dict)
    finite: bool = True
    expect_error: bool = False

    def problems(self, tolerances: dict[str, float] = TOLERANCES) -> list[str]:
        out = []
        if self.error != self.reference_error:
            out.append(f"runtime says {self.error!r}, reference says {self.reference_error!r}")
        if self.expect_error and self.error is None:
            out.append("was accepted but must be refused")
        if not self.expect_error and self.error is not None:
            out.append(f"was refused: {self.error}")
        if not self.finite:
            out.append("non-finite values in the features")
        for name, diff in self.max_diff.items():
            if not diff <= tolerances[name]:
                out.append(f"{name} differs by {diff:.3g} > {tolerances[name]:g}")
        return out


def run_parity(
    cases: list[ParityCase], frontend: FrontEnd | None = None, params: FeatureParams = FEATURES
) -> list[CaseResult]:
    """Run every case through both forms (the runtime as one batch) and compare."""
    frontend = frontend or FrontEnd(params=params)
    batch = frontend.features([case.audio for case in cases])
    results = []
    for position, case in enumerate(cases):
        result = CaseResult(case.name, case.description, expect_error=case.expect_error)
        result.error = batch.errors.get(position)
        try:
            prepared = prepare_chunk(case.audio, params, frontend.length_tolerance_ms,
                                     frontend.max_nonfinite_fraction)
        except ChunkError as exc:
            result.reference_error = str(exc)
            results.append(result)
            continue
        if result.error is not None:
            results.append(result)
            continue
        row = batch.index.index(position)
        runtime = {"waveform": batch.waveform[row], "mel": batch.mel[row],
                   "mel_aug": batch.mel_aug[row]}
        reference = reference_features(prepared, params)
        for name in FEATURE_NAMES:
            ours, theirs = runtime[name], reference[name]
            result.finite &= bool(np.isfinite(ours).all() and np.isfinite(theirs).all())
            diff = np.abs(ours.astype(np.float64) - theirs)
            worst = np.unravel_index(int(np.nanargmax(diff)), diff.shape)
            result.max_diff[name] = float(diff[worst])
            result.worst_at[name] = tuple(int(i) for i in worst)
        results.append(result)
    return results
