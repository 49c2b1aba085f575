"""The worker's view of a model bundle: PCM batches in, one outcome per chunk out.

Wraps FusionModel (soundscape.fusion) or WindowedModel (soundscape.windowed) so the
worker never sees ONNX details: per-item refusals from the model and a batch that fails
as a whole both become per-chunk `Rejected` outcomes, so one bad chunk never takes its
batch down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.logs import get_logger
from soundscape.processors.chunk_decoder import MODEL_SAMPLE_RATE, Rejected
from soundscape.station_sites import StationSites
from soundscape.windowed import season_week, split_label

log = get_logger(__name__)

#: Stages of FusionModel's timings that make the features; the rest is inference.
FEATURE_STAGES = ("frontend", "embedder")


@dataclass(frozen=True)
class WindowDetail:
    """What a windowed bundle adds to a chunk's scores."""

    spans_s: list[tuple[float, float]]
    window_probabilities: np.ndarray  # [W, C]
    best_window: np.ndarray  # [C]: the window each label's chunk score comes from
    embedding: np.ndarray  # [D], mean of the windows'


@dataclass(frozen=True)
class Scored:
    probabilities: np.ndarray  # float32 [classes]
    features_ms: float
    inference_ms: float
    branch_ms: dict[str, float] = field(default_factory=dict)
    windows: WindowDetail | None = None


class ModelScorer:
    def __init__(self, model: Any, *, threshold: float | None = None,
                 sites: StationSites | None = None) -> None:
        self.model = model
        self.bundle = model.bundle
        self.kind: str = self.bundle.kind
        self.version: str = model.version
        window = self.bundle.manifest.window
        label_format = window.label_format if window is not None else "plain"
        names = [split_label(label, label_format) for label in model.labels]
        #: The labels results carry (scientific names for BirdNET) and their common names.
        self.labels: list[str] = [name for name, _ in names]
        self.common_names: list[str | None] = [common for _, common in names]
        self.thresholds: np.ndarray = np.asarray(self.bundle.thresholds(threshold), dtype=np.float32)
        self.sample_rate: int = self.bundle.sample_rate if self.kind == "windowed" else MODEL_SAMPLE_RATE
        self.min_source_rate: int = window.min_source_rate if window is not None else 0
        self.sites = sites
        self._index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def load(cls, bundle: Path, settings: Any, sites: StationSites | None = None) -> ModelScorer:
        from soundscape.bundle import load_bundle

        loaded = load_bundle(bundle)
        cfg, worker = settings.models, settings.worker
        if loaded.kind == "windowed":
            from soundscape.windowed import WindowedModel

            model: Any = WindowedModel(
                loaded, device=cfg.device, device_id=cfg.device_id, max_batch=cfg.max_batch,
                intra_op_threads=cfg.intra_op_threads, hop_s=worker.window_hop_s,
                sensitivity=worker.sensitivity)
        else:
            from soundscape.fusion import FusionModel

            model = FusionModel.from_settings(settings, loaded)
        return cls(model, threshold=worker.threshold, sites=sites)

    # ---- location -------------------------------------------------------------------------
    def in_range(self, station_id: str, chunk_start_ns: int) -> np.ndarray | None:
        """[C] bool: the labels expected at the station at the chunk's week (range model,
        then the station's include and exclude lists); None when that cannot be known."""
        if self.kind != "windowed" or self.sites is None:
            return None
        site = self.sites.site(station_id)
        if site is None:
            return None
        mask = None
        if site.located and self.model.has_range_model:
            mask = self.model.in_range(site.latitude, site.longitude, season_week(chunk_start_ns))
        if site.include is not None:
            listed = np.zeros(len(self.labels), dtype=bool)
            listed[[self._index[x] for x in site.include if x in self._index]] = True
            mask = listed if mask is None else (mask | listed)
        if site.exclude:
            mask = np.ones(len(self.labels), dtype=bool) if mask is None else mask.copy()
            mask[[self._index[x] for x in site.exclude if x in self._index]] = False
        return mask

    # ---- scoring --------------------------------------------------------------------------
    def score(self, pcm: np.ndarray) -> list[Scored | Rejected]:
        """pcm: float32 [batch, 10 s at `sample_rate`]."""
        try:
            return self._score(pcm)
        except Exception as exc:  # noqa: BLE001 - find the culprit item by item
            if len(pcm) == 1:
                return [Rejected("scoring_failed", f"{type(exc).__name__}: {exc}")]
            log.warning("batch scoring failed; scoring items one by one", error=str(exc))
        return [self.score(pcm[i : i + 1])[0] for i in range(len(pcm))]

    def _score(self, pcm: np.ndarray) -> list[Scored | Rejected]:
        if self.kind == "windowed":
            return self._score_windowed(pcm)
        result = self.model.score_audio(pcm)
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

    def _score_windowed(self, pcm: np.ndarray) -> list[Scored | Rejected]:
        result = self.model.score_chunks(np.ascontiguousarray(pcm, dtype=np.float32))
        timings_ms = {stage: seconds * 1e3 for stage, seconds in result.timings.items()}
        inference_ms = sum(timings_ms.values())
        outcomes: list[Scored | Rejected] = []
        for index in range(len(pcm)):
            if index in result.errors:
                outcomes.append(Rejected("model_refused", result.errors[index]))
                continue
            pooled, best = result.pooled(index)
            detail = WindowDetail(result.spans_s, result.window_probabilities[index], best,
                                  result.embeddings[index])
            outcomes.append(Scored(pooled.astype(np.float32), 0.0, inference_ms, timings_ms, detail))
        return outcomes
