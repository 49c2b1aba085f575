"""A scored chunk as the detection message (soundscape.messages.Detection): the labels
it names (the best k, and those at or above their thresholds), its stage times, its
identity from the chunk's envelope. One definition for every producer of results (the
worker, a station scoring its own chunks), so both rank, cut and stamp alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from soundscape.envelope import ChunkEnvelope
from soundscape.messages import AudioStats, Detection, LabelScore, StageTimes

#: `worker_id` of a result a station scored itself (an edge result): `edge:<station_id>`.
EDGE_WORKER_PREFIX = "edge:"


def edge_worker_id(station_id: str) -> str:
    return f"{EDGE_WORKER_PREFIX}{station_id}"


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[LabelScore]:
    k = max(1, min(k, probabilities.size))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [LabelScore(label=labels[i], probability=float(probabilities[i])) for i in order]


def above_threshold(
    probabilities: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> list[LabelScore]:
    hits = np.flatnonzero(probabilities >= thresholds)
    hits = hits[np.argsort(-probabilities[hits], kind="stable")]
    return [LabelScore(label=labels[i], probability=float(probabilities[i])) for i in hits]


def stage_times(envelope: ChunkEnvelope, *, consumed_at: int, scored_at: int, decode_ms: float,
                features_ms: float, inference_ms: float,
                branch_ms: dict[str, float]) -> StageTimes:
    """The chunk's stage stamps (capture and publish from its envelope), durations in ms
    rounded to the microsecond."""
    return StageTimes(
        captured_at=envelope.captured_at,
        published_at=envelope.published_at,
        consumed_at=consumed_at,
        scored_at=scored_at,
        decode_ms=round(decode_ms, 3),
        features_ms=round(features_ms, 3),
        inference_ms=round(inference_ms, 3),
        branch_ms={name: round(ms, 3) for name, ms in branch_ms.items()},
    )


def chunk_result(envelope: ChunkEnvelope, *, bundle_version: str, top: list[LabelScore],
                 found: list[LabelScore], audio: AudioStats, timing: StageTimes, batch_size: int,
                 worker_id: str, **optional: Any) -> Detection:
    """The detection of one chunk; `optional` holds the message's optional fields
    (windows, embedding_f16, audio_source)."""
    return Detection(
        chunk_id=envelope.chunk_id, station_id=envelope.station_id,
        chunk_start=envelope.chunk_start, sample_rate=envelope.sample_rate,
        source=envelope.source, bundle_version=bundle_version, top_k=top, detections=found,
        audio=audio, timing=timing, batch_size=batch_size, worker_id=worker_id, **optional)
