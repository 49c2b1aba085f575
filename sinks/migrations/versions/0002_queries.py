"""Queries people run: detections per species per day, latest heartbeats, coverage gaps,
per-stage latency.

Functions take a time range so that PostgreSQL prunes partitions and uses the indexes;
Grafana calls them with its time macros, e.g.
`SELECT * FROM detections_per_day($__timeFrom(), $__timeTo())`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DETECTIONS_PER_DAY = """
CREATE FUNCTION detections_per_day(
    p_from timestamptz,
    p_to timestamptz,
    p_station text DEFAULT NULL,
    p_time_zone text DEFAULT 'UTC'
) RETURNS TABLE (
    day date,
    station_id text,
    label text,
    detections bigint,
    mean_probability double precision,
    max_probability real
)
LANGUAGE sql STABLE
AS $$
    SELECT (d.chunk_start AT TIME ZONE p_time_zone)::date, d.station_id, d.label,
           count(*), avg(d.probability), max(d.probability)
    FROM detections d
    WHERE d.chunk_start >= p_from AND d.chunk_start < p_to
      AND (p_station IS NULL OR d.station_id = p_station)
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
$$
"""

# A gap is time in [p_from, p_to) after the station's first_seen that no stored chunk
# covers (a chunk covers [chunk_start, chunk_start + 10 s)). Gaps shorter than p_min_gap
# are left out: chunk starts are stored to the microsecond, so abutting chunks may look
# a microsecond apart.
COVERAGE_GAPS = """
CREATE FUNCTION coverage_gaps(
    p_from timestamptz,
    p_to timestamptz,
    p_station text DEFAULT NULL,
    p_min_gap interval DEFAULT interval '1 second'
) RETURNS TABLE (
    station_id text,
    gap_start timestamptz,
    gap_end timestamptz,
    missing interval
)
LANGUAGE sql STABLE
AS $$
    WITH st AS (
        SELECT s.station_id, greatest(p_from, s.first_seen) AS since
        FROM stations s
        WHERE (p_station IS NULL OR s.station_id = p_station) AND s.first_seen < p_to
    ), covered AS (
        SELECT c.station_id, c.chunk_start AS s, c.chunk_start + interval '10 seconds' AS e
        FROM chunks c JOIN st ON st.station_id = c.station_id
        WHERE c.chunk_start > p_from - interval '10 seconds' AND c.chunk_start < p_to
    ), edges AS (
        SELECT station_id, s AS next_start,
               max(e) OVER (PARTITION BY station_id ORDER BY s
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_until
        FROM covered
        UNION ALL
        SELECT st.station_id, p_to, (SELECT max(e) FROM covered c WHERE c.station_id = st.station_id)
        FROM st
    ), gaps AS (
        SELECT e.station_id,
               greatest(coalesce(e.covered_until, st.since), st.since) AS gap_start,
               least(e.next_start, p_to) AS gap_end
        FROM edges e JOIN st ON st.station_id = e.station_id
    )
    SELECT g.station_id, g.gap_start, g.gap_end, g.gap_end - g.gap_start
    FROM gaps g
    WHERE g.gap_end - g.gap_start >= p_min_gap
    ORDER BY g.station_id, g.gap_start
$$
"""

LATEST_HEARTBEATS = """
CREATE VIEW latest_heartbeats AS
SELECT s.station_id, h.sent_at, now() - h.sent_at AS age, h.software_version,
       h.bundle_version, h.disk_free_bytes, h.spool_depth, h.spool_bytes,
       h.oldest_spooled_chunk_start, h.evicted_chunks, h.cpu_temperature_c,
       h.dropped_samples, h.overruns, h.gaps, h.gap_ns_total, h.clock_offset_ms
FROM stations s
CROSS JOIN LATERAL (
    SELECT * FROM station_heartbeats h
    WHERE h.station_id = s.station_id
    ORDER BY h.sent_at DESC
    LIMIT 1
) h
"""

CHUNK_LATENCIES = """
CREATE VIEW chunk_latencies AS
SELECT chunk_id, chunk_start, station_id, source, bundle_version, worker_id, batch_size,
       extract(epoch FROM published_at - captured_at) * 1000 AS capture_to_publish_ms,
       extract(epoch FROM consumed_at - published_at) * 1000 AS publish_to_consume_ms,
       extract(epoch FROM scored_at - consumed_at) * 1000 AS consume_to_score_ms,
       extract(epoch FROM written_at - scored_at) * 1000 AS score_to_write_ms,
       extract(epoch FROM written_at - captured_at) * 1000 AS total_ms,
       decode_ms, features_ms, inference_ms, written_at
FROM chunks
"""


def upgrade() -> None:
    for statement in (DETECTIONS_PER_DAY, COVERAGE_GAPS, LATEST_HEARTBEATS, CHUNK_LATENCIES):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP VIEW chunk_latencies")
    op.execute("DROP VIEW latest_heartbeats")
    op.execute("DROP FUNCTION coverage_gaps(timestamptz, timestamptz, text, interval)")
    op.execute("DROP FUNCTION detections_per_day(timestamptz, timestamptz, text, text)")
