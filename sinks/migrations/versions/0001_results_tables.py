"""Results tables: stations, models, chunks, detections, station_heartbeats, drift_reports.

The four time-series tables are range-partitioned by time; their partitions are created
by the sink and `soundscape db maintain`, not here. Indexes made on a partitioned table
are made on every partition.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = postgresql.TIMESTAMP(timezone=True)
JSONB = postgresql.JSONB()


def _col(name: str, type_: sa.types.TypeEngine, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, type_, nullable=bool(kw.pop("nullable", False)), **kw)  # type: ignore[arg-type]


def _written_at() -> sa.Column:  # type: ignore[type-arg]
    return _col("written_at", TS, server_default=sa.text("now()"))


def upgrade() -> None:
    # Wire times are ns integers; timestamptz keeps microseconds (truncated, as in Python).
    op.execute(
        "CREATE FUNCTION ns_to_timestamptz(ns bigint) RETURNS timestamptz "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT "
        "RETURN timestamptz '1970-01-01 00:00:00+00' + (ns / 1000) * interval '1 microsecond'"
    )
    op.create_table(
        "stations",
        _col("station_id", sa.Text()),
        _col("name", sa.Text(), nullable=True),
        _col("latitude", sa.Double(), nullable=True),
        _col("longitude", sa.Double(), nullable=True),
        _col("elevation_m", sa.Double(), nullable=True),
        _col("first_seen", TS),
        _col("last_seen", TS),
        _col("created_at", TS, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("station_id", name="pk_stations"),
        sa.CheckConstraint("latitude BETWEEN -90 AND 90", name="ck_stations_latitude"),
        sa.CheckConstraint("longitude BETWEEN -180 AND 180", name="ck_stations_longitude"),
    )
    op.create_table(
        "models",
        _col("bundle_version", sa.Text()),
        _col("hashes", JSONB, nullable=True),
        _col("labels", JSONB, nullable=True),
        _col("parameters", JSONB, nullable=True),
        _col("first_used", TS),
        _col("last_used", TS),
        sa.PrimaryKeyConstraint("bundle_version", name="pk_models"),
    )
    op.create_table(
        "chunks",
        _col("chunk_id", postgresql.UUID(as_uuid=True)),
        _col("chunk_start", TS),
        _col("chunk_start_ns", sa.BigInteger()),
        _col("station_id", sa.Text()),
        _col("sample_rate", sa.Integer()),
        _col("source", sa.Text()),
        _col("bundle_version", sa.Text()),
        _col("top_label", sa.Text()),
        _col("top_probability", sa.REAL()),
        _col("top_k", JSONB),
        _col("detection_count", sa.SmallInteger()),
        *(_col(name, sa.REAL()) for name in (
            "rms_dbfs", "noise_floor_dbfs", "peak_dbfs", "clipping_ratio", "silence_ratio",
            "spectral_centroid_hz", "dc_offset",
        )),
        *(_col(name, TS) for name in ("captured_at", "published_at", "consumed_at", "scored_at")),
        _written_at(),
        *(_col(name, sa.REAL()) for name in ("decode_ms", "features_ms", "inference_ms")),
        _col("branch_ms", JSONB),
        _col("batch_size", sa.Integer()),
        _col("worker_id", sa.Text()),
        sa.PrimaryKeyConstraint("chunk_start", "chunk_id", name="pk_chunks"),
        sa.CheckConstraint("source IN ('live', 'replay')", name="ck_chunks_source"),
        postgresql_partition_by="RANGE (chunk_start)",
    )
    op.create_index("ix_chunks_station_id_chunk_start", "chunks", ["station_id", "chunk_start"])
    op.create_index("ix_chunks_chunk_start", "chunks", ["chunk_start"], postgresql_using="brin")
    op.create_index("ix_chunks_written_at", "chunks", ["written_at"], postgresql_using="brin")

    op.create_table(
        "detections",
        _col("chunk_id", postgresql.UUID(as_uuid=True)),
        _col("chunk_start", TS),
        _col("label", sa.Text()),
        _col("station_id", sa.Text()),
        _col("probability", sa.REAL()),
        sa.PrimaryKeyConstraint("chunk_start", "chunk_id", "label", name="pk_detections"),
        postgresql_partition_by="RANGE (chunk_start)",
    )
    op.create_index(
        "ix_detections_station_id_chunk_start", "detections", ["station_id", "chunk_start"]
    )
    op.create_index("ix_detections_label_chunk_start", "detections", ["label", "chunk_start"])

    op.create_table(
        "station_heartbeats",
        _col("station_id", sa.Text()),
        _col("sent_at", TS),
        _col("software_version", sa.Text()),
        _col("bundle_version", sa.Text(), nullable=True),
        _col("disk_free_bytes", sa.BigInteger()),
        _col("spool_depth", sa.BigInteger()),
        _col("spool_bytes", sa.BigInteger()),
        _col("oldest_spooled_chunk_start", TS, nullable=True),
        _col("evicted_chunks", sa.BigInteger()),
        _col("cpu_temperature_c", sa.REAL(), nullable=True),
        *(_col(name, sa.BigInteger()) for name in (
            "dropped_samples", "overruns", "gaps", "gap_ns_total",
        )),
        _col("clock_offset_ms", sa.REAL(), nullable=True),
        _written_at(),
        sa.PrimaryKeyConstraint("station_id", "sent_at", name="pk_station_heartbeats"),
        postgresql_partition_by="RANGE (sent_at)",
    )

    op.create_table(
        "drift_reports",
        _col("station_id", sa.Text()),
        _col("check_name", sa.Text()),
        _col("kind", sa.Text()),
        _col("window_start", TS),
        _col("window_end", TS),
        _col("value", sa.Double()),
        _col("threshold", sa.Double()),
        _col("alert", sa.Boolean()),
        _col("reference", JSONB),
        _col("detail", sa.Text()),
        _col("created_at", TS),
        _written_at(),
        sa.PrimaryKeyConstraint(
            "station_id", "check_name", "window_start", "window_end", name="pk_drift_reports"
        ),
        sa.CheckConstraint("kind IN ('input', 'prediction', 'health')", name="ck_drift_reports_kind"),
        postgresql_partition_by="RANGE (window_start)",
    )
    op.create_index(
        "ix_drift_reports_alerts", "drift_reports", ["window_start"],
        postgresql_where=sa.text("alert"),
    )


def downgrade() -> None:
    for table in ("drift_reports", "station_heartbeats", "detections", "chunks", "models",
                  "stations"):
        op.drop_table(table)  # partitions go with their table
    op.execute("DROP FUNCTION ns_to_timestamptz(bigint)")
