"""Build the detection message for one scored chunk, and the DLQ record for a rejected one."""

from __future__ import annotations

import numpy as np

from soundscape.envelope import ChunkEnvelope
from soundscape.messages import AudioStats, Detection, LabelScore, StageTimes


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
) -> Detection:
    probabilities = np.clip(np.nan_to_num(probabilities, nan=0.0), 0.0, 1.0)
    return Detection(
        chunk_id=envelope.chunk_id,
        station_id=envelope.station_id,
        chunk_start=envelope.chunk_start,
        sample_rate=envelope.sample_rate,
        source=envelope.source,
        bundle_version=bundle_version,
        top_k=top_k(probabilities, labels, k),
        detections=above_threshold(probabilities, labels, thresholds),
        audio=audio,
        timing=StageTimes(
            captured_at=envelope.captured_at,
            published_at=envelope.published_at,
            consumed_at=consumed_at,
            scored_at=scored_at,
            decode_ms=round(decode_ms, 3),
            features_ms=round(features_ms, 3),
            inference_ms=round(inference_ms, 3),
            branch_ms={name: round(ms, 3) for name, ms in branch_ms.items()},
        ),
        batch_size=batch_size,
        worker_id=worker_id,
    )


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
    """The original headers, then why and where: enough to replay the message once fixed."""
    return list(original or []) + [
        ("dlq_reason", reason.encode()),
        ("dlq_detail", detail.encode("utf-8", "replace")[:2000]),
        ("dlq_worker", worker_id.encode()),
        ("dlq_source", f"{topic}/{partition}/{offset}".encode()),
    ]
