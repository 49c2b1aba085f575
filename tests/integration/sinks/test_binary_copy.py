"""The writer's binary COPY, read back from PostgreSQL: every staged column lands in its
table as the message said, times as ns_to_timestamptz would have made them (the sink
sends them ready made, as microseconds since 2000), uuids as the message's."""

from __future__ import annotations

import json
import struct
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from test_windowed_sink import windowed_detection

from soundscape.database import database_url
from soundscape.detection_decoder import FastDetection, decode_detection
from soundscape.messages import Detection
from soundscape.settings import Settings
from soundscape.sinks import staging
from soundscape.sinks.sample_results import NS, detection, drift_report, heartbeat
from soundscape.sinks.writer import ResultBatch, ResultWriter

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _as_staged(value: Any, sql_type: str) -> Any:
    """A value read from a table, in the form chunk_row & co. give it."""
    if value is None:
        return None
    if sql_type == "timestamptz":
        return (value - _PG_EPOCH) // timedelta(microseconds=1)
    if sql_type == "uuid":
        return value.bytes
    if sql_type == "real":  # read back as text: the float4's shortest digits
        return struct.unpack(">f", struct.pack(">f", value))[0]
    return value


def _expected(row: tuple[Any, ...], table: staging.StagingTable,
              jsonb: set[str]) -> tuple[Any, ...]:
    out = []
    for value, (name, sql_type) in zip(row, table.columns):
        if value is not None and sql_type == "real":
            value = struct.unpack(">f", struct.pack(">f", value))[0]
        if value is not None and name in jsonb:
            value = json.loads(value)
        out.append(value)
    return tuple(out)


def _same(stored: list[tuple[Any, ...]], expected: list[tuple[Any, ...]],
          table: staging.StagingTable) -> None:
    """Row by row, column by column, so that a failure names the column."""
    assert len(stored) == len(expected)
    names = [n for n, _ in table.columns]
    for got, want in zip(stored, expected):
        assert list(zip(names, got)) == list(zip(names, want))


def _read(conn: psycopg.Connection[Any], table: str, stage: staging.StagingTable,
          where: str, *params: Any) -> list[tuple[Any, ...]]:
    names = ", ".join(n for n, _ in stage.columns)
    rows = conn.execute(f"SELECT {names} FROM {table} WHERE {where}", params).fetchall()
    return [tuple(_as_staged(v, t) for v, (_, t) in zip(row, stage.columns)) for row in rows]


def _assert_results_stored(conn: psycopg.Connection[Any], station: str,
                           results: list[Detection], detection_order: str) -> None:
    """Every column of the results' chunk rows and of their detection rows (a chunk's
    first row of each label, what the table keeps) reads back as the messages said."""
    stored = _read(conn, "chunks", staging.CHUNKS, "station_id = %s ORDER BY chunk_start",
                   station)
    _same(stored, [_expected(staging.chunk_row(d), staging.CHUNKS,
                             {"top_k", "branch_ms", "windows"}) for d in results],
          staging.CHUNKS)
    stored = _read(conn, "detections", staging.DETECTIONS,
                   f"station_id = %s ORDER BY {detection_order}", station)
    want = [_expected(r, staging.DETECTIONS, set()) for d in results
            for r in _first_per_label(list(staging.detection_rows(d)))]
    if detection_order == "chunk_start, label":
        want.sort(key=lambda r: (r[1], r[3]))
    _same(stored, want, staging.DETECTIONS)


def test_every_staged_column_reads_back_as_the_message_said(results_db: Settings) -> None:
    # Odd nanoseconds everywhere: the sink truncates them to microseconds as
    # ns_to_timestamptz does, never rounds.
    start = (time.time_ns() // NS - 3600) * NS + 123_456_789
    fusion = detection("st-binary", start, detections=3)
    fusion = Detection.model_validate(fusion.model_dump() | {"timing": fusion.timing.model_dump()
                                                              | {"scored_at": start + 10 * NS + 999}})
    birds = windowed_detection("st-binary", start + 10 * NS, seed=5)
    quiet = detection("st-binary", start + 20 * NS, detections=0)
    beats = [heartbeat("st-binary", start + i * 60 * NS + 7, spool_depth=i) for i in range(2)]
    beats[1] = beats[1].model_copy(update={"oldest_spooled_chunk_start": start + 1_999,
                                           "edge_scored": 12, "edge_skipped": 1})
    drift = drift_report("st-binary", start + 5, alert=True)
    # as the sink holds a detection: decoded by the fast path (soundscape/detection_decoder.py)
    fast = [decode_detection(windowed_detection("st-binary", start + 30 * NS, seed=6).to_bytes()),
            decode_detection(detection("st-binary", start + 40 * NS, detections=2).to_bytes())]
    assert all(isinstance(f, FastDetection) for f in fast)
    writer = ResultWriter(results_db)
    try:
        counts = writer.write(ResultBatch([fusion, birds, quiet, *fast], beats, [drift]))
    finally:
        writer.close()
    # what is expected comes from the contract's model of each message, pydantic's
    results = [fusion, birds, quiet, *(f.to_detection() for f in fast)]
    fast_rows = sum(len(_first_per_label(list(staging.detection_rows(d)))) for d in results[3:])
    assert fast_rows > 2
    assert (counts.chunks, counts.detections, counts.heartbeats, counts.drift_reports) == \
        (5, 5 + fast_rows, 2, 1)

    with psycopg.connect(database_url(results_db)) as conn:
        _assert_results_stored(conn, "st-binary", results, "chunk_start, probability DESC")
        stored = _read(conn, "station_heartbeats", staging.HEARTBEATS,
                       "station_id = 'st-binary' ORDER BY sent_at")
        _same(stored, [_expected(staging.heartbeat_row(h), staging.HEARTBEATS, set())
                       for h in beats], staging.HEARTBEATS)
        stored = _read(conn, "drift_reports", staging.DRIFT, "station_id = 'st-binary'")
        _same(stored, [_expected(staging.drift_row(drift), staging.DRIFT, {"reference"})],
              staging.DRIFT)

        # The times are those the SQL conversion the sink used before makes.
        same = conn.execute(
            "SELECT chunk_start = ns_to_timestamptz(%s) AND scored_at = ns_to_timestamptz(%s) "
            "AND chunk_start = ns_to_timestamptz(chunk_start_ns) FROM chunks WHERE chunk_id = %s",
            (start, start + 10 * NS + 999, fusion.chunk_id)).fetchone()
        assert same == (True,)
        same = conn.execute(
            "SELECT oldest_spooled_chunk_start = ns_to_timestamptz(%s) FROM station_heartbeats "
            "WHERE station_id = 'st-binary' AND oldest_spooled_chunk_start IS NOT NULL",
            (start + 1_999,)).fetchone()
        assert same == (True,)
        assert conn.execute("SELECT count(*) FROM detections d JOIN chunks c USING (chunk_id) "
                            "WHERE d.chunk_start <> c.chunk_start").fetchone() == (0,)


def _first_per_label(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """What ON CONFLICT (chunk_start, chunk_id, label) keeps: a chunk's first row a label."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for row in rows:
        key = (row[0], row[3])  # chunk_id, label
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def test_new_chunks_go_straight_in_and_a_batch_with_a_stored_one_goes_through_staging(
        results_db: Settings) -> None:
    """Both ways store the same rows: a chunk's first row of each label (a windowed result
    naming a label twice), every column as the message said; a chunk stored before is
    counted as a duplicate and its detections are not added again."""
    start = (time.time_ns() // NS - 7200) * NS + 5
    old = detection("st-staged", start, detections=3)
    birds = windowed_detection("st-staged", start + 10 * NS, seed=7)
    twice = birds.detections[0].model_copy(update={"window_start_s": 6.0, "window_end_s": 9.0,
                                                   "probability": 0.51})
    birds = birds.model_copy(update={"detections": [*birds.detections, twice]})
    fresh = windowed_detection("st-staged", start + 20 * NS, seed=8)
    fresh = fresh.model_copy(update={"detections": [*fresh.detections, fresh.detections[0]]})
    new = detection("st-staged", start + 30 * NS, detections=2)
    writer = ResultWriter(results_db)
    try:
        straight = writer.write(ResultBatch([old, fresh]))
        assert writer.staged_batches == 0
        staged = writer.write(ResultBatch([old, birds, new]))
        assert writer.staged_batches == 1
    finally:
        writer.close()
    assert (straight.chunks, straight.detections, straight.duplicates) == \
        (2, 3 + len(fresh.detections) - 1, 0)
    assert (staged.chunks, staged.detections, staged.duplicates) == \
        (2, len(birds.detections) - 1 + 2, 1)

    with psycopg.connect(database_url(results_db)) as conn:
        _assert_results_stored(conn, "st-staged", [old, birds, fresh, new], "chunk_start, label")
