from __future__ import annotations

import json
import uuid

import pytest

from soundscape.envelope import chunk_id_for
from soundscape.messages import (
    AudioStats,
    Detection,
    DriftReport,
    Heartbeat,
    LabelScore,
    MessageError,
    StageTimes,
    parse,
)


def detection(**overrides: object) -> Detection:
    fields: dict[str, object] = dict(
        chunk_id=chunk_id_for("st-1", 10**18),
        station_id="st-1",
        chunk_start=10**18,
        sample_rate=32000,
        source="live",
        bundle_version="demo-1",
        top_k=[LabelScore(label="wren", probability=0.2), LabelScore(label="tit", probability=0.7)],
        detections=[LabelScore(label="tit", probability=0.7)],
        audio=AudioStats(rms_dbfs=-30, noise_floor_dbfs=-50, peak_dbfs=-3, clipping_ratio=0,
                         silence_ratio=0.1, spectral_centroid_hz=2500, dc_offset=0.0),
        timing=StageTimes(captured_at=1, published_at=2, consumed_at=3, scored_at=4,
                          decode_ms=1.5, features_ms=2.0, inference_ms=3.0,
                          branch_ms={"resnet50": 1.0}),
        batch_size=8,
        worker_id="w-1",
    )
    return Detection(**(fields | overrides))  # type: ignore[arg-type]


def test_detection_round_trip_and_top_label() -> None:
    original = detection()
    back = parse(Detection, original.to_bytes())
    assert back == original
    assert back.top.label == "tit"  # top_k is kept sorted by probability
    assert isinstance(back.chunk_id, uuid.UUID)


def test_heartbeat_and_drift_round_trip() -> None:
    hb = Heartbeat(station_id="st-1", sent_at=5, software_version="0.1.0", disk_free_bytes=10,
                   spool_depth=2, spool_bytes=800_000, oldest_spooled_chunk_start=4)
    assert parse(Heartbeat, hb.to_bytes()) == hb
    report = DriftReport(station_id="st-1", check="noise_floor", kind="input", window_start=0,
                         window_end=10, value=21.0, threshold=6.0, alert=True,
                         reference={"median_dbfs": -50.0}, created_at=11)
    assert parse(DriftReport, report.to_bytes()) == report


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(station_id="Bad Station"), "station_id"),
        (lambda d: d["top_k"].clear(), "top_k"),
        (lambda d: d["top_k"][0].update(probability=1.5), "top_k.0.probability"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.pop("worker_id"), "worker_id"),
    ],
)
def test_invalid_detections_name_the_field(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(detection().to_bytes())
    mutate(data)
    with pytest.raises(MessageError, match=expected):
        parse(Detection, json.dumps(data).encode())


@pytest.mark.parametrize("raw", [b"", None, b"not json", b"[]", b"\xff\xfe"])
def test_garbage_is_a_message_error(raw: bytes | None) -> None:
    with pytest.raises(MessageError):
        parse(Detection, raw)


def test_a_forged_window_span_is_refused() -> None:
    import pytest

    from soundscape.messages import LabelScore, WindowScores

    with pytest.raises(ValueError, match="after"):
        LabelScore(label="Aus bus", probability=0.9, window_start_s=6.0, window_end_s=3.0)
    with pytest.raises(ValueError, match="go together"):
        LabelScore(label="Aus bus", probability=0.9, window_start_s=6.0)
    with pytest.raises(ValueError):
        LabelScore(label="Aus bus", probability=0.9, window_start_s=9.0, window_end_s=12.0)
    with pytest.raises(ValueError, match="after"):
        WindowScores(start_s=7.0, end_s=4.0)
