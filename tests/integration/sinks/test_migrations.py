"""Migrations upgrade and downgrade cleanly, on an empty database and on one with data,
and the SQLAlchemy models describe exactly what they create."""

from __future__ import annotations

import time

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sink_testkit import scalar, table_counts

from soundscape.database import database_url
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.connection import owner_engine
from soundscape.sinks.migrate import include_name
from soundscape.sinks.sample_results import NS, detection_stream, drift_report, heartbeat
from soundscape.sinks.schema import Base
from soundscape.sinks.writer import ResultBatch, ResultWriter

OBJECTS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND c.relname <> 'alembic_version'
"""
FUNCTIONS = """
SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
"""

#: The columns 0003 adds (on the parent tables; partitions have them too).
WINDOWED_COLUMNS = """
SELECT count(*) FROM information_schema.columns
WHERE table_schema = 'public' AND (table_name, column_name) IN (
    ('detections', 'common_name'), ('detections', 'window_start_s'),
    ('detections', 'window_end_s'), ('detections', 'in_range'), ('chunks', 'windows'),
    ('chunks', 'embedding'), ('stations', 'include_species'), ('stations', 'exclude_species'))
"""


def _write_some(settings: Settings) -> None:
    start = (time.time_ns() // NS - 86_400) * NS
    writer = ResultWriter(settings)
    try:
        writer.write(ResultBatch(
            list(detection_stream(40, 4, start)),
            [heartbeat("station-000", start)],
            [drift_report("station-001", start)],
        ))
    finally:
        writer.close()


def test_upgrade_and_downgrade_on_an_empty_database(db_settings: Settings) -> None:
    assert migrate.schema_status(db_settings).pending == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011"]
    status = migrate.upgrade(db_settings)
    assert status.up_to_date and status.current == migrate.head_revision()
    assert scalar(db_settings, OBJECTS) == 16  # 14 tables (clips, reviews, web_users: 0007; notifications: 0008; model_promotions, shadow_results: 0009; edge_results: 0010), 2 views
    assert scalar(db_settings, FUNCTIONS) == 4  # 3 query functions, the partition function

    status = migrate.downgrade(db_settings, "base")
    assert status.current is None and status.pending == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011"]
    assert scalar(db_settings, OBJECTS) == 0 and scalar(db_settings, FUNCTIONS) == 0
    assert migrate.upgrade(db_settings).up_to_date  # and up again


def test_upgrade_and_downgrade_with_data(db_settings: Settings) -> None:
    migrate.upgrade(db_settings)
    _write_some(db_settings)
    before = table_counts(db_settings)
    assert before["chunks"] == 40 and before["detections"] == 120

    migrate.downgrade(db_settings, "0002")  # the windowed columns go, the rows stay
    assert table_counts(db_settings) == before
    assert scalar(db_settings, WINDOWED_COLUMNS) == 0
    migrate.upgrade(db_settings)
    assert scalar(db_settings, WINDOWED_COLUMNS) == 8
    assert scalar(db_settings, "SELECT count(*) FROM chunks WHERE windows IS NULL") == 40

    migrate.downgrade(db_settings, "0001")  # the queries go, the data stays
    assert table_counts(db_settings) == before
    assert scalar(db_settings, "SELECT to_regclass('latest_heartbeats')") is None
    migrate.upgrade(db_settings)
    assert table_counts(db_settings) == before
    assert scalar(db_settings, "SELECT count(*) FROM chunk_latencies") == 40

    migrate.downgrade(db_settings, "base")  # partitions go with their tables
    assert scalar(db_settings, OBJECTS) == 0
    migrate.upgrade(db_settings)
    assert table_counts(db_settings)["chunks"] == 0
    _write_some(db_settings)  # and the sink can write again, partitions re-created
    assert table_counts(db_settings)["chunks"] == 40


def test_models_match_the_migrated_schema(db_settings: Settings) -> None:
    migrate.upgrade(db_settings)
    _write_some(db_settings)  # partitions exist and must not count as differences
    engine = owner_engine(db_settings)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": include_name, "compare_type": True}
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_reader_reads_tables_views_and_partitions_made_later(db_settings: Settings) -> None:
    migrate.upgrade(db_settings)
    _write_some(db_settings)  # creates partitions after the grants of infra and upgrade
    with psycopg.connect(database_url(db_settings, "reader")) as conn:
        partition = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'chunks'::regclass LIMIT 1"
        ).fetchone()[0]  # type: ignore[index]
        assert conn.execute(f"SELECT count(*) FROM {partition}").fetchone()[0] > 0  # type: ignore[index]
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 40  # type: ignore[index]
        assert conn.execute("SELECT count(*) FROM latest_heartbeats").fetchone()[0] == 1  # type: ignore[index]


def test_offline_sql_is_printed_for_a_dba() -> None:
    text = migrate.upgrade_sql()
    assert "CREATE TABLE chunks" in text and "PARTITION BY RANGE (chunk_start)" in text
    assert "CREATE FUNCTION coverage_gaps" in text
