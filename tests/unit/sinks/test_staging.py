"""How messages become rows: every column of the tables is filled, in the right order."""

from __future__ import annotations

import re

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
    assert row["chunk_start_ns"] == 10**18 and row["captured_ns"] == result.timing.captured_at


def test_one_detection_row_per_label_above_threshold() -> None:
    result = detection("st-1", 10**18, detections=4)
    rows = list(staging.detection_rows(result))
    assert [r[2] for r in rows] == [s.label for s in result.detections]
    assert list(staging.detection_rows(detection("st-1", 10**18, detections=0))) == []


def test_seen_ranges_give_sorted_keys_with_earliest_and_latest() -> None:
    keys, first, last = staging.seen_ranges([("b", 5), ("a", 7), ("b", 2), ("a", 9), ("b", 4)])
    assert (keys, first, last) == (["a", "b"], [7, 2], [9, 5])
    assert staging.seen_ranges([]) == ([], [], [])
