"""Run the ONNX front-end: chunks in, the branch inputs (or a per-chunk error) out.

FusionModel.score_audio (soundscape/fusion.py) runs frontend.onnx inside the bundle;
this wrapper is for everything that needs the features alone: parity, the benchmark,
and training on exactly the features the worker will compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from soundscape.models.frontend.graph import INPUT, OUTPUTS, build_frontend
from soundscape.frontend_inputs import (
    DEFAULT_LENGTH_TOLERANCE_MS,
    DEFAULT_MAX_NONFINITE_FRACTION,
    prepare_batch,
)
from soundscape.frontend_params import FEATURES, FeatureParams


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu sees a GPU, else the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
    return preferred + ["CPUExecutionProvider"]


@dataclass
class FeatureBatch:
    """Features for the chunks that passed; `index[i]` is row i's input position."""

    waveform: np.ndarray  # [n, samples]
    mel: np.ndarray  # [n, 1, n_mels, frames]
    mel_aug: np.ndarray  # [n, 1, n_mels, frames]
    index: tuple[int, ...]
    errors: dict[int, str] = field(default_factory=dict)


class FrontEnd:
    """An ONNX Runtime session over frontend.onnx (built in memory when no file is given)."""

    def __init__(
        self,
        model: Path | str | onnx.ModelProto | None = None,
        params: FeatureParams = FEATURES,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
        max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
    ) -> None:
        import onnxruntime as ort

        if model is None:
            model = build_frontend(params)
        payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            payload, options, providers=list(providers or default_providers())
        )
        self.params = params
        self.length_tolerance_ms = length_tolerance_ms
        self.max_nonfinite_fraction = max_nonfinite_fraction

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, pcm: np.ndarray) -> dict[str, np.ndarray]:
        """Prepared float32 [batch, samples] -> {waveform, mel, mel_aug}."""
        outputs = self.session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(pcm, np.float32)})
        return dict(zip(OUTPUTS, outputs, strict=True))

    def features(self, chunks: Sequence[np.ndarray]) -> FeatureBatch:
        """Check each chunk, run the good ones as one batch, report the others."""
        batch = prepare_batch(
            chunks, self.params, self.length_tolerance_ms, self.max_nonfinite_fraction
        )
        if batch.index:
            out = self.run(batch.pcm)
        else:
            empty = np.zeros((0, 1, self.params.n_mels, self.params.frames), np.float32)
            out = {"waveform": batch.pcm, "mel": empty, "mel_aug": empty.copy()}
        return FeatureBatch(
            waveform=out["waveform"], mel=out["mel"], mel_aug=out["mel_aug"],
            index=batch.index, errors=batch.errors,
        )
