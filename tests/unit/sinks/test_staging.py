"""How messages become rows: every column of the tables is filled, in the right order."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soundscape.messages import Detection
from soundscape.sinks import staging
from soundscape.sinks.sample_results import detection, drift_report, heartbeat
from soundscape.sinks.schema import Base

TABLES = {
    staging.CHUNKS: "chunks",
    staging.DETECTIONS: "detections",
    staging.HEARTBEATS: "station_heartbeats",
    staging.DRIFT: "drift_reports",
}


def _insert_columns(insert_sql: str) -> list[str]:
    inner = re.search(r"INSERT INTO \w+ \((.*?)\)\s*SELECT", insert_sql, re.S)
    assert inner, insert_sql
    return [c.strip() for c in inner.group(1).split(",")]


@pytest.mark.parametrize("stage", list(TABLES), ids=lambda s: s.name)
def test_each_insert_fills_every_column_of_its_table(stage: staging.StagingTable) -> None:
    table = Base.metadata.tables[TABLES[stage]]
    assert sorted(_insert_columns(stage.insert)) == sorted(c.name for c in table.columns)


@pytest.mark.parametrize(
    ("stage", "row"),
    [
        (staging.CHUNKS, staging.chunk_row(detection("st-1", 10**18))),
        (staging.DETECTIONS, next(staging.detection_rows(detection("st-1", 10**18)))),
        (staging.HEARTBEATS, staging.heartbeat_row(heartbeat("st-1", 10**18))),
        (staging.DRIFT, staging.drift_row(drift_report("st-1", 10**18))),
    ],
    ids=["chunks", "detections", "heartbeats", "drift"],
)
def test_rows_match_their_staging_columns(stage: staging.StagingTable, row: tuple) -> None:  # type: ignore[type-arg]
    assert len(row) == len(stage.columns) == len(stage.types)
    assert stage.create_sql().startswith(f"CREATE TEMP TABLE IF NOT EXISTS {stage.name} (")
    assert "FORMAT BINARY" in stage.copy_sql()


def test_chunk_row_carries_the_top_label_and_json_of_top_k() -> None:
    result = detection("st-1", 10**18, detections=2)
    row = dict(zip((n for n, _ in staging.CHUNKS.columns), staging.chunk_row(result)))
    assert row["top_label"] == result.top.label
    assert row["detection_count"] == 2
    back = Detection.model_validate_json(result.to_bytes())
    assert row["top_k"].startswith('[{"label":"' + back.top_k[0].label)
    assert row["chunk_start_ns"] == 10**18
    assert row["captured_at"] == staging.pg_micros(result.timing.captured_at)


def test_one_detection_row_per_label_above_threshold() -> None:
    result = detection("st-1", 10**18, detections=4)
    names = [n for n, _ in staging.DETECTIONS.columns]
    rows = [dict(zip(names, r)) for r in staging.detection_rows(result)]
    assert [r["label"] for r in rows] == [s.label for s in result.detections]
    assert list(staging.detection_rows(detection("st-1", 10**18, detections=0))) == []


def test_seen_ranges_give_sorted_keys_with_earliest_and_latest() -> None:
    keys, first, last = staging.seen_ranges([("b", 5), ("a", 7), ("b", 2), ("a", 9), ("b", 4)])
    assert (keys, first, last) == (["a", "b"], [7, 2], [9, 5])
    assert staging.seen_ranges([]) == ([], [], [])


# ---- binary COPY ------------------------------------------------------------------------
def test_times_travel_as_microseconds_since_2000_truncated_like_ns_to_timestamptz() -> None:
    assert staging.pg_micros(946_684_800 * 10**9) == 0
    assert staging.pg_micros(946_684_800 * 10**9 + 1_999) == 1  # truncated, not rounded
    moment = datetime(2026, 12, 7, 3, 4, 5, 123456, tzinfo=UTC)
    ns = int(moment.timestamp()) * 10**9 + 123_456_789
    assert datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=staging.pg_micros(ns)) == moment
    assert staging.CHUNKS.wire_types[:3] == ["bytea", "bigint", "bigint"]  # uuid, timestamptz, bigint


_SCALARS = {"bigint": ">q", "integer": ">i", "smallint": ">h", "real": ">f",
            "double precision": ">d"}


def decode_copy(data: bytes, table: staging.StagingTable) -> list[tuple[Any, ...]]:
    """An independent reading of PostgreSQL's binary COPY format, as the row values that
    chunk_row and detection_rows give (times as microseconds, uuids as bytes)."""
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8)) and data.endswith(b"\xff\xff")
    at, rows = 19, []
    while data[at:at + 2] != b"\xff\xff":
        (count,) = struct.unpack_from(">h", data, at)
        assert count == len(table.columns)
        at += 2
        row: list[Any] = []
        for _, sql_type in table.columns:
            (length,) = struct.unpack_from(">i", data, at)
            at += 4
            if length == -1:
                row.append(None)
                continue
            raw = data[at:at + length]
            at += length
            if sql_type == "text":
                row.append(raw.decode())
            elif sql_type == "boolean":
                row.append(raw == b"\x01")
            elif sql_type in ("uuid", "bytea"):
                row.append(raw)
            else:
                fmt = _SCALARS.get(sql_type, ">q")  # timestamptz: int64
                assert length == struct.calcsize(fmt)
                row.append(struct.unpack(fmt, raw)[0])
        rows.append(tuple(row))
    assert at + 2 == len(data)
    return rows


def _as_float4(row: tuple[Any, ...], table: staging.StagingTable) -> tuple[Any, ...]:
    return tuple(
        struct.unpack(">f", struct.pack(">f", v))[0] if t == "real" and v is not None else v
        for v, (_, t) in zip(row, table.columns)
    )


def test_encoded_chunks_and_detections_read_back_as_their_rows() -> None:
    from tests.unit.sinks.test_windowed_rows import windowed

    results = [detection(f"st-{i % 3}", 10**18 + i * 10**10, detections=i % 4) for i in range(12)]
    results += [windowed(), windowed(embedding=False)]
    pairs = [(d.chunk_id.bytes, d) for d in results]
    chunks = decode_copy(staging.encode_chunks(pairs), staging.CHUNKS)
    assert chunks == [_as_float4(staging.chunk_row(d), staging.CHUNKS) for d in results]
    detections = decode_copy(staging.encode_detections(pairs) or b"", staging.DETECTIONS)
    expected = [r for d in results for r in staging.detection_rows(d)]
    assert detections == [_as_float4(r, staging.DETECTIONS) for r in expected]
    assert any(r[-1] is not None for r in detections)  # the windowed fields were exercised
    assert staging.encode_detections([(d.chunk_id.bytes, d) for d in results[:1]]) is None


def test_a_value_the_format_cannot_carry_is_a_bad_value() -> None:
    result = detection("st-1", 10**18)
    broken = result.model_copy(update={"batch_size": 2**40})  # not an int32
    with pytest.raises(staging.BadValue):
        staging.encode_chunks([(broken.chunk_id.bytes, broken)])
