"""The web app's classifier: the worker's scorer on the active bundle, loaded on first
use (the app starts at once), one upload scored at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.settings import Settings
from soundscape.web.classify import ChunkResult, LabelProbability

BATCH = 16


class ScorerClassifier:
    def __init__(self, settings: Settings, bundle: Path | None = None, top: int = 5) -> None:
        self.settings, self._bundle, self._top = settings, bundle, top
        self._scorer: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        if self._scorer is None:
            from soundscape.app.worker_cli import resolve_bundle
            from soundscape.processors.scoring import ModelScorer

            self._scorer = ModelScorer.load(resolve_bundle(self.settings, self._bundle),
                                            self.settings)
        return self._scorer

    @property
    def sample_rate(self) -> int:
        return int(self._loaded().sample_rate)

    @property
    def version(self) -> str:
        return str(self._loaded().version)

    def classify(self, chunks: np.ndarray) -> list[ChunkResult]:
        from soundscape.processors.scoring import Scored

        with self._lock:
            scorer = self._loaded()
            rate = scorer.sample_rate
            results: list[ChunkResult] = []
            for first in range(0, len(chunks), BATCH):
                for offset, outcome in enumerate(scorer.score(chunks[first:first + BATCH])):
                    index = first + offset
                    result = ChunkResult(index, index * chunks.shape[1] / rate,
                                         (index + 1) * chunks.shape[1] / rate)
                    if isinstance(outcome, Scored):
                        p = outcome.probabilities
                        order = np.argsort(-p, kind="stable")
                        result.top = [self._score(scorer, i, p) for i in order[:self._top]]
                        result.detections = [self._score(scorer, i, p) for i in order
                                             if p[i] >= scorer.thresholds[i]]
                    results.append(result)
            return results

    @staticmethod
    def _score(scorer: Any, i: int, p: np.ndarray) -> LabelProbability:
        return LabelProbability(scorer.labels[i], round(float(p[i]), 5), scorer.common_names[i])
