"""Time partitions: made ahead, made on demand for old data, dropped past retention."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from sink_testkit import scalar, table_counts

from soundscape.database import database_url
from soundscape.settings import Settings
from soundscape.sinks.connection import connect
from soundscape.sinks.partitions import PartitionManager, to_ns
from soundscape.sinks.sample_results import detection, heartbeat
from soundscape.sinks.writer import ResultBatch, ResultWriter

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def with_sink(settings: Settings, **values: object) -> Settings:
    return settings.model_copy(update={"sink": settings.sink.model_copy(update=values)})


def partitions_of(settings: Settings, table: str) -> list[str]:
    with connect(settings) as conn:
        catalogue = PartitionManager(settings).catalogue(conn)
    return sorted(p.name for p, _ in catalogue[table])


def test_maintenance_creates_partitions_ahead_once(results_db: Settings) -> None:
    settings = with_sink(results_db, partition_interval="week", partitions_ahead=2)
    writer = ResultWriter(settings)
    try:
        report = writer.maintain(now=NOW)
        assert len(report.created) == 4 * 3
        assert partitions_of(settings, "chunks") == [
            "chunks_p20261123", "chunks_p20261130", "chunks_p20261207",
        ]
        assert writer.maintain(now=NOW).created == []  # idempotent
    finally:
        writer.close()


def test_an_archive_replay_gets_its_partition_on_demand(results_db: Settings) -> None:
    old = to_ns(datetime(2019, 6, 14, 5, 30, tzinfo=UTC))
    writer = ResultWriter(results_db)
    try:
        counts = writer.write(ResultBatch([detection("marsh-01", old)], [heartbeat("marsh-01", old)]),
                              now=NOW)
    finally:
        writer.close()
    assert counts.chunks == 1 and counts.heartbeats == 1
    assert sorted(counts.partitions_created) == [
        "chunks_p20190601", "detections_p20190601", "station_heartbeats_p20190601",
    ]
    # Grafana's role reads the new partition, through the parent and directly.
    with psycopg.connect(database_url(results_db, "reader")) as conn:
        assert conn.execute("SELECT count(*) FROM chunks_p20190601").fetchone()[0] == 1  # type: ignore[index]
        assert conn.execute(
            "SELECT chunk_start FROM chunks WHERE station_id = 'marsh-01'"
        ).fetchone()[0] == datetime(2019, 6, 14, 5, 30, tzinfo=UTC)  # type: ignore[index]


def test_retention_drops_old_partitions_and_skips_expired_results(results_db: Settings) -> None:
    old, recent = to_ns(datetime(2026, 6, 3, tzinfo=UTC)), to_ns(datetime(2026, 11, 20, tzinfo=UTC))
    keep_all = ResultWriter(results_db)
    try:
        keep_all.write(ResultBatch([detection("st-1", old), detection("st-1", recent)]), now=NOW)
        keep_all.maintain(now=NOW)
    finally:
        keep_all.close()
    assert "chunks_p20260601" in partitions_of(results_db, "chunks")

    settings = with_sink(results_db, retention_days=90)  # horizon 2026-08-25
    as_sink = ResultWriter(settings)  # the writer role may not drop anything
    try:
        assert as_sink.maintain(now=NOW).dropped == []
        assert "chunks_p20260601" in partitions_of(settings, "chunks")
    finally:
        as_sink.close()
    writer = ResultWriter(settings, role="owner")  # `db maintain`
    try:
        dry = writer.maintain(now=NOW, dry_run=True)
        assert "chunks_p20260601" in dry.dropped and "chunks_p20260601" in partitions_of(settings, "chunks")
        report = writer.maintain(now=NOW)
        assert sorted(report.dropped) == ["chunks_p20260601", "detections_p20260601"]
        assert "chunks_p20260601" not in partitions_of(settings, "chunks")
        assert table_counts(settings)["chunks"] == 1

        # A result older than retention is counted as expired, not stored (and does not
        # bring the dropped partition back).
        counts = writer.write(ResultBatch([detection("st-1", old + 10**10)]), now=NOW)
        assert (counts.chunks, counts.expired, counts.partitions_created) == (0, 1, [])
        assert "chunks_p20260601" not in partitions_of(settings, "chunks")
    finally:
        writer.close()


def test_changing_the_interval_fills_only_free_time(results_db: Settings) -> None:
    monthly = ResultWriter(results_db)
    try:
        monthly.maintain(now=NOW)  # November .. February, by month
    finally:
        monthly.close()
    weekly = with_sink(results_db, partition_interval="week")
    writer = ResultWriter(weekly)
    try:
        moment = to_ns(datetime(2027, 3, 3, tzinfo=UTC))  # week of Mon 1 March .. 8 March
        counts = writer.write(ResultBatch([detection("st-1", moment)]), now=NOW)
        assert counts.chunks == 1 and "chunks_p20270301" in counts.partitions_created
        before = to_ns(datetime(2026, 10, 30, tzinfo=UTC))  # week of 26 Oct, cut at 1 Nov
        counts = writer.write(ResultBatch([detection("st-1", before)]), now=NOW)
        assert "chunks_p20261026" in counts.partitions_created
    finally:
        writer.close()
    bound = scalar(
        weekly,
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'chunks_p20261026'",
    )
    assert "'2026-11-01 00:00:00+00'" in bound


def test_a_partition_dropped_behind_the_writers_back_is_made_again(results_db: Settings) -> None:
    moment = to_ns(datetime(2025, 3, 10, tzinfo=UTC))
    writer = ResultWriter(results_db)
    try:
        writer.write(ResultBatch([detection("st-1", moment)]), now=NOW)
        with connect(results_db, role="owner") as other:  # `db maintain`, shorter retention
            other.execute("DROP TABLE chunks_p20250301")
        counts = writer.write(ResultBatch([detection("st-1", moment + 10 * 10**9)]), now=NOW)
    finally:
        writer.close()
    assert counts.chunks == 1 and counts.partitions_created == ["chunks_p20250301"]
    assert table_counts(results_db)["chunks"] == 1
