"""Plausible result messages made from numbers, for tests, the benchmark and demos.

Inference workers are what really write detections; these stand in for them with the
same message types (soundscape.messages), so what the sink reads is the real contract.
The same arguments always give the same messages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from soundscape.envelope import CHUNK_SECONDS, chunk_id_for
from soundscape.messages import (
    AudioStats,
    Detection,
    DriftReport,
    Heartbeat,
    LabelScore,
    StageTimes,
)

from soundscape.settings import Settings
from soundscape.sinks.bundle_registry import BundleRecord, register_bundle

NS = 1_000_000_000
CHUNK_NS = CHUNK_SECONDS * NS
LABELS = tuple(
    f"{genus}_{species}"
    for genus in ("turdus", "parus", "troglodytes", "sylvia", "fringilla", "erithacus")
    for species in ("merula", "major", "communis", "atricapilla", "coelebs", "rubecula", "minor")
)

#: The version these results name; registered like a real bundle by `register_sample_bundle`.
SAMPLE_BUNDLE = "sample-1"


def register_sample_bundle(settings: Settings, schema: str | None = None,
                           version: str = SAMPLE_BUNDLE) -> None:
    """Register the sample results' bundle version, as `models register` would a real one
    (the sink stores results of registered versions only)."""
    register_bundle(settings, BundleRecord(
        version=version, hashes={}, labels=list(LABELS), parameters={"kind": "sample"},
        location="soundscape.sinks.sample_results"), schema=schema)


def detection(
    station_id: str,
    chunk_start: int,
    *,
    detections: int = 3,
    bundle_version: str = SAMPLE_BUNDLE,
    source: str = "replay",
    seed: int | None = None,
) -> Detection:
    """One chunk's result with `detections` labels above threshold (top-5 kept)."""
    rng = random.Random(seed if seed is not None else f"{station_id}/{chunk_start}")
    labels = rng.sample(LABELS, max(5, detections))
    probabilities = sorted((rng.uniform(0.05, 0.99) for _ in labels), reverse=True)
    scores = [LabelScore(label=lb, probability=p) for lb, p in zip(labels, probabilities)]
    captured = chunk_start + CHUNK_NS
    return Detection(
        chunk_id=chunk_id_for(station_id, chunk_start),
        station_id=station_id,
        chunk_start=chunk_start,
        sample_rate=32_000,
        source=source,  # type: ignore[arg-type]
        bundle_version=bundle_version,
        top_k=scores[:5],
        detections=scores[:detections],
        audio=AudioStats(
            rms_dbfs=rng.uniform(-50, -20), noise_floor_dbfs=rng.uniform(-70, -45),
            peak_dbfs=rng.uniform(-20, -1), clipping_ratio=0.0,
            silence_ratio=rng.uniform(0, 0.3), spectral_centroid_hz=rng.uniform(1500, 4500),
            dc_offset=rng.uniform(-0.001, 0.001),
        ),
        timing=StageTimes(
            captured_at=captured, published_at=captured + 40_000_000,
            consumed_at=captured + 90_000_000, scored_at=captured + 250_000_000,
            decode_ms=rng.uniform(2, 6), features_ms=rng.uniform(5, 15),
            inference_ms=rng.uniform(20, 60),
            branch_ms={"embedding": 4.0, "resnet50": 11.0, "efficientnet_b3": 14.0,
                       "waveform_cnn": 3.0, "meta": 0.2},
        ),
        batch_size=32,
        worker_id="sample-worker",
    )


def detection_stream(
    count: int, stations: int, start_ns: int, *, detections: int = 3, first: int = 0
) -> Iterator[Detection]:
    """`count` abutting chunks round-robin over `stations` (results number `first` on)."""
    for index in range(first, first + count):
        station = f"station-{index % stations:03d}"
        chunk_start = start_ns + (index // stations) * CHUNK_NS
        yield detection(station, chunk_start, detections=detections, seed=index)


def heartbeat(station_id: str, sent_at: int, *, spool_depth: int = 0) -> Heartbeat:
    return Heartbeat(
        station_id=station_id, sent_at=sent_at, software_version="0.1.0",
        bundle_version=SAMPLE_BUNDLE, disk_free_bytes=20 * 10**9, spool_depth=spool_depth,
        spool_bytes=spool_depth * 400_000, cpu_temperature_c=48.5, clock_offset_ms=0.4,
    )


def drift_report(station_id: str, window_start: int, *, alert: bool = False) -> DriftReport:
    return DriftReport(
        station_id=station_id, check="noise_floor", kind="input", window_start=window_start,
        window_end=window_start + 3600 * NS, value=7.5 if alert else 1.5, threshold=6.0,
        alert=alert, reference={"median_dbfs": -55.0}, detail="", created_at=window_start,
    )
