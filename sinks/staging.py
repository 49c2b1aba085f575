"""How result messages become rows: staging tables, their row tuples, and the INSERTs.

A batch is COPYed into temporary staging tables that hold the wire values (ns integers,
JSON text), then moved with one INSERT ... SELECT ... ON CONFLICT DO NOTHING per table:
PostgreSQL converts the times (ns_to_timestamptz) and stamps written_at, and a row that
is already there (a redelivery, a replayed topic) is skipped, never doubled. A chunk's
detection rows go in only with its chunk row (STORED_CHUNKS).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from soundscape.messages import Detection, DriftReport, Heartbeat


@dataclass(frozen=True)
class StagingTable:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    insert: str

    def create_sql(self) -> str:
        cols = ", ".join(f"{name} {type_}" for name, type_ in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.name} ({cols}) ON COMMIT DELETE ROWS"

    def copy_sql(self) -> str:
        """Binary COPY: numbers travel as numbers, not as text PostgreSQL parses again."""
        names = ", ".join(n for n, _ in self.columns)
        return f"COPY {self.name} ({names}) FROM STDIN (FORMAT BINARY)"

    @property
    def types(self) -> list[str]:
        return [type_ for _, type_ in self.columns]


class BadValue(ValueError):
    """A message field the database cannot store as it came (the writer rejects the row)."""


def _json(value: Any) -> str:
    """Compact JSON text (pydantic-core's encoder: several times faster than json.dumps).

    Fields that are None are left out: fusion results' label scores stay exactly
    {"label", "probability"} as before windowed bundles, and windowed ones stay small."""
    return to_json(value, exclude_none=True).decode()


def embedding_bytes(text: str | None) -> bytes | None:
    """The message's base64 embedding as the bytes stored (bytea: a quarter smaller, and
    readable as float16 with numpy.frombuffer(..., "<f2")); None stays NULL."""
    if text is None:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadValue(f"embedding_f16 is not base64: {exc}") from None
    if len(raw) % 2:
        raise BadValue(f"embedding_f16 has {len(raw)} bytes, not 2 a float16 dimension")
    return raw


CHUNKS = StagingTable(
    "stage_chunks",
    (
        ("chunk_id", "uuid"), ("chunk_start_ns", "bigint"), ("station_id", "text"),
        ("sample_rate", "integer"), ("source", "text"), ("bundle_version", "text"),
        ("top_label", "text"), ("top_probability", "real"), ("top_k", "text"),
        ("detection_count", "smallint"), ("rms_dbfs", "real"), ("noise_floor_dbfs", "real"),
        ("peak_dbfs", "real"), ("clipping_ratio", "real"), ("silence_ratio", "real"),
        ("spectral_centroid_hz", "real"), ("dc_offset", "real"), ("captured_ns", "bigint"),
        ("published_ns", "bigint"), ("consumed_ns", "bigint"), ("scored_ns", "bigint"),
        ("decode_ms", "real"), ("features_ms", "real"), ("inference_ms", "real"),
        ("branch_ms", "text"), ("batch_size", "integer"), ("worker_id", "text"),
        ("windows", "text"), ("embedding", "bytea"),
    ),
    """
    WITH stored AS (
        INSERT INTO chunks (
            chunk_id, chunk_start, chunk_start_ns, station_id, sample_rate, source, bundle_version,
            top_label, top_probability, top_k, detection_count, rms_dbfs, noise_floor_dbfs,
            peak_dbfs, clipping_ratio, silence_ratio, spectral_centroid_hz, dc_offset,
            captured_at, published_at, consumed_at, scored_at, written_at,
            decode_ms, features_ms, inference_ms, branch_ms, batch_size, worker_id, windows,
            embedding)
        SELECT chunk_id, ns_to_timestamptz(chunk_start_ns), chunk_start_ns, station_id, sample_rate,
            source, bundle_version, top_label, top_probability, top_k::jsonb, detection_count,
            rms_dbfs, noise_floor_dbfs, peak_dbfs, clipping_ratio, silence_ratio,
            spectral_centroid_hz, dc_offset, ns_to_timestamptz(captured_ns),
            ns_to_timestamptz(published_ns), ns_to_timestamptz(consumed_ns),
            ns_to_timestamptz(scored_ns), statement_timestamp(),
            decode_ms, features_ms, inference_ms, branch_ms::jsonb, batch_size, worker_id,
            windows::jsonb, embedding
        FROM stage_chunks
        ON CONFLICT (chunk_start, chunk_id) DO NOTHING
        RETURNING chunk_id)
    INSERT INTO stage_stored_chunks SELECT chunk_id FROM stored
    """,
)

DETECTIONS = StagingTable(
    "stage_detections",
    (("chunk_id", "uuid"), ("chunk_start_ns", "bigint"), ("label", "text"),
     ("station_id", "text"), ("probability", "real"), ("common_name", "text"),
     ("window_start_s", "real"), ("window_end_s", "real"), ("in_range", "boolean")),
    """
    INSERT INTO detections (chunk_id, chunk_start, label, station_id, probability,
        common_name, window_start_s, window_end_s, in_range)
    SELECT chunk_id, ns_to_timestamptz(chunk_start_ns), label, station_id, probability,
        common_name, window_start_s, window_end_s, in_range
    FROM stage_detections
    WHERE chunk_id IN (SELECT chunk_id FROM stage_stored_chunks)
    ON CONFLICT (chunk_start, chunk_id, label) DO NOTHING
    """,
)

HEARTBEATS = StagingTable(
    "stage_heartbeats",
    (
        ("station_id", "text"), ("sent_ns", "bigint"), ("software_version", "text"),
        ("bundle_version", "text"), ("disk_free_bytes", "bigint"), ("spool_depth", "bigint"),
        ("spool_bytes", "bigint"), ("oldest_spooled_ns", "bigint"), ("evicted_chunks", "bigint"),
        ("cpu_temperature_c", "real"), ("dropped_samples", "bigint"), ("overruns", "bigint"),
        ("gaps", "bigint"), ("gap_ns_total", "bigint"), ("clock_offset_ms", "real"),
    ),
    """
    INSERT INTO station_heartbeats (
        station_id, sent_at, software_version, bundle_version, disk_free_bytes, spool_depth,
        spool_bytes, oldest_spooled_chunk_start, evicted_chunks, cpu_temperature_c,
        dropped_samples, overruns, gaps, gap_ns_total, clock_offset_ms, written_at)
    SELECT station_id, ns_to_timestamptz(sent_ns), software_version, bundle_version,
        disk_free_bytes, spool_depth, spool_bytes, ns_to_timestamptz(oldest_spooled_ns),
        evicted_chunks, cpu_temperature_c, dropped_samples, overruns, gaps, gap_ns_total,
        clock_offset_ms, statement_timestamp()
    FROM stage_heartbeats
    ON CONFLICT (station_id, sent_at) DO NOTHING
    """,
)

DRIFT = StagingTable(
    "stage_drift",
    (
        ("station_id", "text"), ("check_name", "text"), ("kind", "text"),
        ("window_start_ns", "bigint"), ("window_end_ns", "bigint"), ("value", "double precision"),
        ("threshold", "double precision"), ("alert", "boolean"), ("reference", "text"),
        ("detail", "text"), ("created_ns", "bigint"),
    ),
    """
    INSERT INTO drift_reports (
        station_id, check_name, kind, window_start, window_end, value, threshold, alert,
        reference, detail, created_at, written_at)
    SELECT station_id, check_name, kind, ns_to_timestamptz(window_start_ns),
        ns_to_timestamptz(window_end_ns), value, threshold, alert, reference::jsonb, detail,
        ns_to_timestamptz(created_ns), statement_timestamp()
    FROM stage_drift
    ON CONFLICT (station_id, check_name, window_start, window_end) DO NOTHING
    """,
)

ALL = (CHUNKS, DETECTIONS, HEARTBEATS, DRIFT)

#: The chunk ids the CHUNKS insert stored (not already there). A chunk's detections are
#: stored with its chunk row only: a result scored again (a replay, a redelivery after an
#: aborted transaction) may keep a slightly different set of labels, and rows of both
#: would contradict the chunk row's detection_count and double the chunk in the counts.
STORED_CHUNKS = ("CREATE TEMP TABLE IF NOT EXISTS stage_stored_chunks (chunk_id uuid) "
                 "ON COMMIT DELETE ROWS")

#: Stations and models are upserted from per-batch aggregates, in key order, so that
#: concurrent sinks lock the same rows in the same order (no deadlocks).
UPSERT_STATIONS = """
INSERT INTO stations (station_id, first_seen, last_seen)
SELECT station_id, ns_to_timestamptz(first_ns), ns_to_timestamptz(last_ns)
FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(station_id, first_ns, last_ns)
ORDER BY station_id
ON CONFLICT (station_id) DO UPDATE
SET first_seen = least(stations.first_seen, excluded.first_seen),
    last_seen = greatest(stations.last_seen, excluded.last_seen)
WHERE excluded.first_seen < stations.first_seen OR excluded.last_seen > stations.last_seen
"""

UPSERT_MODELS = """
INSERT INTO models (bundle_version, first_used, last_used)
SELECT bundle_version, ns_to_timestamptz(first_ns), ns_to_timestamptz(last_ns)
FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(bundle_version, first_ns, last_ns)
ORDER BY bundle_version
ON CONFLICT (bundle_version) DO UPDATE
SET first_used = least(models.first_used, excluded.first_used),
    last_used = greatest(models.last_used, excluded.last_used)
WHERE models.first_used IS NULL
   OR excluded.first_used < models.first_used OR excluded.last_used > models.last_used
"""


def chunk_row(d: Detection) -> tuple[Any, ...]:
    """Raises BadValue for an embedding that is not base64 of float16 values."""
    a, t = d.audio, d.timing
    top = d.top_k[0]
    return (
        d.chunk_id, d.chunk_start, d.station_id, d.sample_rate, d.source, d.bundle_version,
        top.label, top.probability,
        _json(d.top_k),
        len(d.detections), a.rms_dbfs, a.noise_floor_dbfs, a.peak_dbfs, a.clipping_ratio,
        a.silence_ratio, a.spectral_centroid_hz, a.dc_offset, t.captured_at, t.published_at,
        t.consumed_at, t.scored_at, t.decode_ms, t.features_ms, t.inference_ms,
        _json(t.branch_ms), d.batch_size, d.worker_id,
        None if d.windows is None else _json(d.windows), embedding_bytes(d.embedding_f16),
    )


def detection_rows(d: Detection) -> Iterator[tuple[Any, ...]]:
    for s in d.detections:
        yield (d.chunk_id, d.chunk_start, s.label, d.station_id, s.probability, s.common_name,
               s.window_start_s, s.window_end_s, s.in_range)


def heartbeat_row(h: Heartbeat) -> tuple[Any, ...]:
    return (
        h.station_id, h.sent_at, h.software_version, h.bundle_version, h.disk_free_bytes,
        h.spool_depth, h.spool_bytes, h.oldest_spooled_chunk_start, h.evicted_chunks,
        h.cpu_temperature_c, h.dropped_samples, h.overruns, h.gaps, h.gap_ns_total,
        h.clock_offset_ms,
    )


def drift_row(r: DriftReport) -> tuple[Any, ...]:
    return (
        r.station_id, r.check, r.kind, r.window_start, r.window_end, r.value, r.threshold,
        r.alert, _json(r.reference), r.detail, r.created_at,
    )


def seen_ranges(pairs: Iterable[tuple[str, int]]) -> tuple[list[str], list[int], list[int]]:
    """(key, time) pairs -> sorted keys with their earliest and latest time, as arrays."""
    spans: dict[str, tuple[int, int]] = {}
    for key, ns in pairs:
        low, high = spans.get(key, (ns, ns))
        spans[key] = (min(low, ns), max(high, ns))
    keys = sorted(spans)
    return keys, [spans[k][0] for k in keys], [spans[k][1] for k in keys]
