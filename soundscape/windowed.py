"""WindowedModel: score chunks with a windowed bundle (one classifier over fixed windows at
its own sample rate, e.g. BirdNET v2.4: 3 s at 48 kHz); numpy and onnxruntime only.

A 10 s chunk is cut into windows that start every `hop` samples; when the grid does not
end at the chunk's end, one last window is aligned to the end, so every sample is seen
and no window reaches into the next chunk (which another batch, or another worker, may
score). A label's chunk score is its highest window score (max pooling); the window that
gave it is reported with it. The chunk's embedding is the mean of its windows'.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import CLASSIFIER, RANGE, Bundle, BundleError, check_graph_io, load_bundle
from soundscape.ort_sessions import import_onnxruntime, providers, session_options

#: Logits are clipped before the sigmoid (as BirdNET does), so a sensitivity never overflows.
LOGIT_CLIP = 15.0


def window_spans(total: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample spans [start, end) covering [0, total): a hop grid, plus one window aligned
    to the end when the grid stops short. A chunk shorter than a window is one span."""
    if total <= window:
        return [(0, window)]
    spans = [(start, start + window) for start in range(0, total - window + 1, hop)]
    if spans[-1][1] < total:
        spans.append((total - window, total))
    return spans


def season_week(chunk_start_ns: int) -> int:
    """BirdNET's week of the year: 1..48, four weeks a month (days 1-7, 8-14, 15-21, 22+)."""
    day = datetime.fromtimestamp(chunk_start_ns / 1e9, tz=timezone.utc)
    return (day.month - 1) * 4 + min(4, (day.day - 1) // 7 + 1)


def split_label(label: str, label_format: str) -> tuple[str, str | None]:
    """(label, common name): BirdNET's labels are 'Scientific name_Common name'."""
    if label_format == "scientific_common" and "_" in label:
        scientific, common = label.split("_", 1)
        return scientific, common
    return label, None


@dataclass
class WindowedScores:
    """Per-chunk results of one batch; rows of refused chunks are absent from `chunks`."""

    spans_s: list[tuple[float, float]]  # window spans in seconds inside the chunk
    window_probabilities: dict[int, np.ndarray] = field(default_factory=dict)  # item -> [W, C]
    embeddings: dict[int, np.ndarray] = field(default_factory=dict)  # item -> [D] (mean)
    errors: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def pooled(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [C], index of the best window per label [C])."""
        windows = self.window_probabilities[item]
        best = windows.argmax(axis=0)
        return windows.max(axis=0), best


class WindowedModel:
    """A loaded, verified windowed bundle. One per thread of work (it is locked)."""

    def __init__(
        self,
        bundle: Bundle | Path | str,
        *,
        device: str = "auto",
        device_id: int = 0,
        max_batch: int = 256,
        intra_op_threads: int = 0,
        hop_s: float | None = None,
        sensitivity: float | None = None,
    ) -> None:
        onnxruntime = import_onnxruntime()
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if self.bundle.kind != "windowed" or self.bundle.manifest.window is None:
            raise BundleError(f"{self.bundle.root}: a {self.bundle.kind} bundle, not a windowed one")
        self.params = self.bundle.manifest.window
        self.max_batch = max_batch
        hop = self.params.hop_samples if hop_s is None else round(hop_s * self.params.sample_rate)
        if not 0 < hop <= self.params.samples:
            raise BundleError(f"window hop {hop_s} s: must lie in (0, "
                              f"{self.params.samples / self.params.sample_rate:g}] s")
        self.hop = int(hop)
        self.sensitivity = self.params.sensitivity if sensitivity is None else sensitivity
        if not 0.5 <= self.sensitivity <= 1.5:
            raise BundleError(f"sensitivity {self.sensitivity}: must lie in [0.5, 1.5]")
        self.device, chosen = providers(onnxruntime, device, device_id)
        options = session_options(onnxruntime, intra_op_threads)
        self._sessions: dict[str, Any] = {}
        for role, entry in self.bundle.manifest.graphs.items():
            path = self.bundle.path(role)
            try:
                session = onnxruntime.InferenceSession(str(path), options, providers=chosen)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise BundleError(f"{path}: onnxruntime cannot load it ({exc})") from None
            check_graph_io(path, entry.inputs, entry.outputs, session)
            self._sessions[role] = session
        self._lock = threading.Lock()
        self._range_cache = lru_cache(maxsize=4096)(self._range_uncached)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    @property
    def sample_rate(self) -> int:
        return self.params.sample_rate

    @property
    def has_range_model(self) -> bool:
        return RANGE in self._sessions

    def spans(self, total: int) -> list[tuple[int, int]]:
        return window_spans(total, self.params.samples, self.hop)

    # ---- scoring ------------------------------------------------------------------------
    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        clipped = np.clip(logits, -LOGIT_CLIP, LOGIT_CLIP) * self.sensitivity
        return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)

    def score_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[n, samples] float32 windows -> (logits [n, C], embeddings [n, D])."""
        session = self._sessions[CLASSIFIER]
        logits, embeddings = [], []
        with self._lock:
            for start in range(0, len(windows), self.max_batch):
                part = np.ascontiguousarray(windows[start:start + self.max_batch], dtype=np.float32)
                out_logits, out_embedding = session.run(["logits", "embedding"], {"audio": part})
                logits.append(out_logits)
                embeddings.append(out_embedding)
        return np.concatenate(logits), np.concatenate(embeddings)

    def score_chunks(self, pcm: np.ndarray) -> WindowedScores:
        """[batch, chunk samples] float32 at the model's rate -> per-window probabilities.

        A chunk holding NaN or Inf is refused on its own; the others are scored together.
        """
        started = time.perf_counter()
        pcm = np.asarray(pcm)
        if pcm.ndim != 2 or pcm.dtype != np.float32:
            raise ValueError(f"expected float32 [batch, samples], got {pcm.dtype} {list(pcm.shape)}")
        spans = self.spans(pcm.shape[1])
        rate = float(self.params.sample_rate)
        result = WindowedScores([(a / rate, min(b, pcm.shape[1]) / rate) for a, b in spans])
        finite = np.isfinite(pcm.sum(axis=1, dtype=np.float64))
        for index in np.flatnonzero(~finite):
            result.errors[int(index)] = "audio holds NaN or Inf"
        good = np.flatnonzero(finite)
        if len(good):
            windows = _cut(pcm[good], spans, self.params.samples)
            began = time.perf_counter()
            logits, embeddings = self.score_windows(windows)
            result.timings[CLASSIFIER] = time.perf_counter() - began
            per = len(spans)
            probs = self.probabilities(logits).reshape(len(good), per, -1)
            embeds = embeddings.reshape(len(good), per, -1).mean(axis=1)
            for row, item in enumerate(good):
                if not np.isfinite(probs[row]).all():
                    result.errors[int(item)] = "the model produced NaN or Inf for this item"
                    continue
                result.window_probabilities[int(item)] = probs[row]
                result.embeddings[int(item)] = embeds[row]
        result.seconds = time.perf_counter() - started
        return result

    # ---- the species-range model --------------------------------------------------------
    def range_scores(self, latitude: float, longitude: float, week: int) -> np.ndarray | None:
        """Per-label likelihood of occurring at this place and week ([C]), or None when the
        bundle has no range model. Cached: stations do not move and weeks are few."""
        if not self.has_range_model:
            return None
        return self._range_cache(round(latitude, 4), round(longitude, 4), int(week))

    def in_range(self, latitude: float, longitude: float, week: int) -> np.ndarray | None:
        scores = self.range_scores(latitude, longitude, week)
        return None if scores is None else scores >= self.params.location_threshold

    def _range_uncached(self, latitude: float, longitude: float, week: int) -> np.ndarray:
        site = np.array([[latitude, longitude, week]], dtype=np.float32)
        with self._lock:
            (scores,) = self._sessions[RANGE].run(["scores"], {"site": site})
        return scores[0]


def _cut(pcm: np.ndarray, spans: list[tuple[int, int]], window: int) -> np.ndarray:
    """[items, samples] -> [items * windows, window], zero-padding a span past the end."""
    items, total = pcm.shape
    out = np.zeros((items, len(spans), window), dtype=np.float32)
    for w, (start, end) in enumerate(spans):
        stop = min(end, total)
        out[:, w, :stop - start] = pcm[:, start:stop]
    return out.reshape(items * len(spans), window)
