"""The worker's view of a model bundle: PCM batches in, one outcome per chunk out.

Wraps FusionModel (soundscape.fusion) so the worker never sees ONNX details: per-item
refusals from the model and a batch that fails as a whole both become per-chunk
`Rejected` outcomes, so one bad chunk never takes its batch down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundscape.logs import get_logger
from soundscape.processors.chunk_decoder import Rejected

log = get_logger(__name__)

#: Stages of FusionModel's timings that make the features; the rest is inference.
FEATURE_STAGES = ("frontend", "embedder")


@dataclass(frozen=True)
class Scored:
    probabilities: np.ndarray  # float32 [classes]
    features_ms: float
    inference_ms: float
    branch_ms: dict[str, float] = field(default_factory=dict)


class ModelScorer:
    def __init__(self, model: object) -> None:
        self.model = model
        self.version: str = model.version  # type: ignore[attr-defined]
        self.labels: list[str] = list(model.labels)  # type: ignore[attr-defined]
        self.thresholds: np.ndarray = np.asarray(
            model.bundle.thresholds(), dtype=np.float32  # type: ignore[attr-defined]
        )

    @classmethod
    def load(cls, bundle: Path, settings: object) -> ModelScorer:
        from soundscape.fusion import FusionModel

        return cls(FusionModel.from_settings(settings, bundle))  # type: ignore[arg-type]

    def score(self, pcm: np.ndarray) -> list[Scored | Rejected]:
        """pcm: float32 [batch, 320000]."""
        try:
            return self._score(pcm)
        except Exception as exc:  # noqa: BLE001 - find the culprit item by item
            if len(pcm) == 1:
                return [Rejected("scoring_failed", f"{type(exc).__name__}: {exc}")]
            log.warning("batch scoring failed; scoring items one by one", error=str(exc))
        return [self.score(pcm[i : i + 1])[0] for i in range(len(pcm))]

    def _score(self, pcm: np.ndarray) -> list[Scored | Rejected]:
        result = self.model.score_audio(pcm)  # type: ignore[attr-defined]
        timings_ms = {stage: seconds * 1e3 for stage, seconds in result.timings.items()}
        features_ms = sum(ms for stage, ms in timings_ms.items() if stage in FEATURE_STAGES)
        inference_ms = sum(ms for stage, ms in timings_ms.items() if stage not in FEATURE_STAGES)
        outcomes: list[Scored | Rejected] = []
        for index, row in enumerate(np.asarray(result.probabilities)):
            if index in result.errors:
                outcomes.append(Rejected("model_refused", result.errors[index]))
            elif not np.all(np.isfinite(row)):
                outcomes.append(Rejected("scoring_failed", "model returned non-finite scores"))
            else:
                outcomes.append(Scored(row.astype(np.float32), features_ms, inference_ms, timings_ms))
        return outcomes
