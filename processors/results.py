"""Build the detection message for one scored chunk, and the DLQ record for a rejected one."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

import numpy as np

from soundscape.dead_letter import carried_headers, detail_bytes
from soundscape.envelope import ChunkEnvelope
from soundscape.detection_message import above_threshold, chunk_result, stage_times, top_k
from soundscape.messages import (
    AudioSource,
    AudioStats,
    Detection,
    LabelScore,
    WindowScores,
)
from soundscape.processors.scoring import WindowDetail


@dataclass(frozen=True)
class LabelInfo:
    """How a windowed result names and filters its labels."""

    common_names: list[str | None]
    in_range: np.ndarray | None = None  # [C] bool; None: unknown
    location_filter: Literal["mark", "drop", "off"] = "mark"
    window_top_k: int = 3
    keep_embedding: bool = False

    def allowed(self, count: int) -> np.ndarray:
        """Labels that may be reported at all (drop mode removes those out of range)."""
        if self.in_range is None or self.location_filter != "drop":
            return np.ones(count, dtype=bool)
        return self.in_range

    def mark(self, index: int) -> bool | None:
        if self.in_range is None or self.location_filter == "off":
            return None
        return bool(self.in_range[index])


def windowed_scores(
    probabilities: np.ndarray, detail: WindowDetail, labels: list[str], thresholds: np.ndarray,
    k: int, info: LabelInfo,
) -> tuple[list[LabelScore], list[LabelScore], list[WindowScores]]:
    """(top_k, detections, windows) of a windowed result: each label carries its common
    name, the window its score comes from and whether it is expected at the station."""
    allowed = info.allowed(len(labels))

    def score(i: int, p: float, window: int) -> LabelScore:
        start, end = detail.spans_s[window]
        return LabelScore(label=labels[i], probability=float(p), common_name=info.common_names[i],
                          window_start_s=round(start, 3), window_end_s=round(end, 3),
                          in_range=info.mark(i))

    def ranked(values: np.ndarray, count: int) -> np.ndarray:
        candidates = np.flatnonzero(allowed)
        order = candidates[np.argsort(-values[candidates], kind="stable")]
        return order[:count]

    top = [score(i, probabilities[i], int(detail.best_window[i]))
           for i in ranked(probabilities, max(1, k))]
    if not top:  # drop mode with nothing in range: keep the best, marked
        i = int(np.argmax(probabilities))
        top = [score(i, probabilities[i], int(detail.best_window[i]))]
    hits = np.flatnonzero((probabilities >= thresholds) & allowed)
    hits = hits[np.argsort(-probabilities[hits], kind="stable")]
    found = [score(i, probabilities[i], int(detail.best_window[i])) for i in hits]
    windows = []
    for w, (start, end) in enumerate(detail.spans_s):
        row = detail.window_probabilities[w]
        best = ranked(row, info.window_top_k) if info.window_top_k else []
        windows.append(WindowScores(start_s=round(start, 3), end_s=round(end, 3),
                                    top_k=[score(int(i), row[i], w) for i in best]))
    return top, found, windows


def embedding_text(embedding: np.ndarray) -> str:
    """base64 of little-endian float16: 2 KB for BirdNET's 1024 dimensions."""
    return base64.b64encode(np.asarray(embedding, dtype="<f2").tobytes()).decode()


def build_detection(
    *,
    envelope: ChunkEnvelope,
    probabilities: np.ndarray,
    labels: list[str],
    thresholds: np.ndarray,
    k: int,
    bundle_version: str,
    audio: AudioStats,
    consumed_at: int,
    scored_at: int,
    decode_ms: float,
    features_ms: float,
    inference_ms: float,
    branch_ms: dict[str, float],
    batch_size: int,
    worker_id: str,
    windows: WindowDetail | None = None,
    label_info: LabelInfo | None = None,
    audio_source: AudioSource | None = None,
) -> Detection:
    probabilities = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
    window_scores: list[WindowScores] | None = None
    embedding: str | None = None
    if windows is None:
        top, found = top_k(probabilities, labels, k), above_threshold(probabilities, labels, thresholds)
    else:
        info = label_info or LabelInfo([None] * len(labels))
        top, found, window_scores = windowed_scores(probabilities, windows, labels, thresholds,
                                                    k, info)
        embedding = embedding_text(windows.embedding) if info.keep_embedding else None
    timing = stage_times(envelope, consumed_at=consumed_at, scored_at=scored_at,
                         decode_ms=decode_ms, features_ms=features_ms,
                         inference_ms=inference_ms, branch_ms=branch_ms)
    return chunk_result(envelope, bundle_version=bundle_version, top=top, found=found,
                        audio=audio, timing=timing, batch_size=batch_size, worker_id=worker_id,
                        windows=window_scores, embedding_f16=embedding, audio_source=audio_source)


def dlq_headers(
    original: list[tuple[str, bytes]] | None,
    *,
    reason: str,
    detail: str,
    worker_id: str,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    """The original headers (less any forged `dlq_*`), then why and where: enough to
    replay the message once fixed."""
    return carried_headers(original) + [
        ("dlq_reason", reason.encode()),
        ("dlq_detail", detail_bytes(detail)),
        ("dlq_worker", worker_id.encode()),
        ("dlq_source", f"{topic}/{partition}/{offset}".encode()),
    ]
