"""How result messages become rows: staging tables, their row tuples, and the INSERTs.

A batch is COPYed (binary) into temporary staging tables, then moved with one
INSERT ... SELECT ... ON CONFLICT DO NOTHING per table: PostgreSQL parses the JSON and
stamps written_at, and a row that is already there (a redelivery, a replayed topic) is
skipped, never doubled. A chunk's detection rows go in only with its chunk row
(STORED_CHUNKS).

Times travel ready made: a timestamptz column is sent as its binary wire value, the
int64 count of microseconds since 2000-01-01 UTC (`pg_micros`), which is what
ns_to_timestamptz(ns) computes (ns truncated to microseconds). Converting in SQL cost
the server 1.6 µs a value, about a third of its work per result; the integer arithmetic
here costs next to nothing. UUIDs travel as their 16 bytes for the same reason (the
server reads either the same way), through psycopg's C dumper instead of its Python one.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from soundscape.detection_decoder import AnyDetection, struct_json
from soundscape.messages import DriftReport, Heartbeat


#: Microseconds from 1970-01-01 to 2000-01-01 (UTC), PostgreSQL's epoch.
PG_EPOCH_US = 946_684_800_000_000

#: How a column of a SQL type is sent in binary COPY, where that differs: psycopg dumps
#: the row value as the wire type; the server reads the bytes as the column's type.
#: timestamptz <- int64 microseconds since 2000 (`pg_micros`), uuid <- its 16 bytes.
WIRE_TYPES = {"timestamptz": "bigint", "uuid": "bytea"}


def pg_micros(ns: int) -> int:
    """A ns time (>= 0) as binary timestamptz: microseconds since 2000-01-01 UTC, the
    ns truncated to microseconds as ns_to_timestamptz does."""
    return ns // 1000 - PG_EPOCH_US


def _pg_micros_or_none(ns: int | None) -> int | None:
    return None if ns is None else ns // 1000 - PG_EPOCH_US


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

    @property
    def wire_types(self) -> list[str]:
        """The types psycopg dumps the row values as (`copy.set_types`): see WIRE_TYPES."""
        return [WIRE_TYPES.get(type_, type_) for _, type_ in self.columns]


class BadValue(ValueError):
    """A message field the database cannot store as it came (the writer rejects the row)."""


def _json(value: Any) -> str:
    """Compact JSON text (pydantic-core's encoder: several times faster than json.dumps).

    Fields that are None are left out: fusion results' label scores stay exactly
    {"label", "probability"} as before windowed bundles, and windowed ones stay small.
    The sink's fast-path structs (detection_decoder) leave out the same None fields."""
    return _json_bytes(value).decode()


def _json_bytes(value: Any) -> bytes:
    raw = struct_json(value)
    return to_json(value, exclude_none=True) if raw is None else raw


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
    (  # fixed-width, never-NULL columns first: encode_chunks packs them in one go
        ("chunk_id", "uuid"), ("chunk_start", "timestamptz"), ("chunk_start_ns", "bigint"),
        ("sample_rate", "integer"), ("top_probability", "real"), ("detection_count", "smallint"),
        ("rms_dbfs", "real"), ("noise_floor_dbfs", "real"), ("peak_dbfs", "real"),
        ("clipping_ratio", "real"), ("silence_ratio", "real"), ("spectral_centroid_hz", "real"),
        ("dc_offset", "real"), ("captured_at", "timestamptz"), ("published_at", "timestamptz"),
        ("consumed_at", "timestamptz"), ("scored_at", "timestamptz"), ("decode_ms", "real"),
        ("features_ms", "real"), ("inference_ms", "real"), ("batch_size", "integer"),
        ("station_id", "text"), ("source", "text"), ("bundle_version", "text"),
        ("top_label", "text"), ("top_k", "text"), ("branch_ms", "text"), ("worker_id", "text"),
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
        SELECT chunk_id, chunk_start, chunk_start_ns, station_id, sample_rate,
            source, bundle_version, top_label, top_probability, top_k::jsonb, detection_count,
            rms_dbfs, noise_floor_dbfs, peak_dbfs, clipping_ratio, silence_ratio,
            spectral_centroid_hz, dc_offset, captured_at, published_at, consumed_at,
            scored_at, statement_timestamp(),
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
    (("chunk_id", "uuid"), ("chunk_start", "timestamptz"), ("probability", "real"),
     ("label", "text"), ("station_id", "text"), ("common_name", "text"),
     ("window_start_s", "real"), ("window_end_s", "real"), ("in_range", "boolean")),
    """
    INSERT INTO detections (chunk_id, chunk_start, label, station_id, probability,
        common_name, window_start_s, window_end_s, in_range)
    SELECT chunk_id, chunk_start, label, station_id, probability,
        common_name, window_start_s, window_end_s, in_range
    FROM stage_detections
    WHERE chunk_id IN (SELECT chunk_id FROM stage_stored_chunks)
    ON CONFLICT (chunk_start, chunk_id, label) DO NOTHING
    """,
)

HEARTBEATS = StagingTable(
    "stage_heartbeats",
    (
        ("station_id", "text"), ("sent_at", "timestamptz"), ("software_version", "text"),
        ("bundle_version", "text"), ("disk_free_bytes", "bigint"), ("spool_depth", "bigint"),
        ("spool_bytes", "bigint"), ("oldest_spooled_chunk_start", "timestamptz"),
        ("evicted_chunks", "bigint"),
        ("cpu_temperature_c", "real"), ("dropped_samples", "bigint"), ("overruns", "bigint"),
        ("gaps", "bigint"), ("gap_ns_total", "bigint"), ("clock_offset_ms", "real"),
        ("edge_scored", "bigint"), ("edge_skipped", "bigint"),
    ),
    """
    INSERT INTO station_heartbeats (
        station_id, sent_at, software_version, bundle_version, disk_free_bytes, spool_depth,
        spool_bytes, oldest_spooled_chunk_start, evicted_chunks, cpu_temperature_c,
        dropped_samples, overruns, gaps, gap_ns_total, clock_offset_ms, edge_scored,
        edge_skipped, written_at)
    SELECT station_id, sent_at, software_version, bundle_version,
        disk_free_bytes, spool_depth, spool_bytes, oldest_spooled_chunk_start,
        evicted_chunks, cpu_temperature_c, dropped_samples, overruns, gaps, gap_ns_total,
        clock_offset_ms, edge_scored, edge_skipped, statement_timestamp()
    FROM stage_heartbeats
    ON CONFLICT (station_id, sent_at) DO NOTHING
    """,
)

DRIFT = StagingTable(
    "stage_drift",
    (
        ("station_id", "text"), ("check_name", "text"), ("kind", "text"),
        ("window_start", "timestamptz"), ("window_end", "timestamptz"),
        ("value", "double precision"),
        ("threshold", "double precision"), ("alert", "boolean"), ("reference", "text"),
        ("detail", "text"), ("created_at", "timestamptz"),
    ),
    """
    INSERT INTO drift_reports (
        station_id, check_name, kind, window_start, window_end, value, threshold, alert,
        reference, detail, created_at, written_at)
    SELECT station_id, check_name, kind, window_start, window_end, value, threshold, alert,
        reference::jsonb, detail, created_at, statement_timestamp()
    FROM stage_drift
    ON CONFLICT (station_id, check_name, window_start, window_end) DO NOTHING
    """,
)

ALL = (CHUNKS, DETECTIONS, HEARTBEATS, DRIFT)

#: Straight into the tables, no staging (encode_chunks(jsonb=True) and
#: encode_detections(first_per_label=True) data): a batch of chunks none of which is
#: stored yet, the usual case, cost PostgreSQL 37-39 µs of CPU a result instead of 58-74
#: (`bench sink`, three detection rows a result). A chunk stored before
#: breaks the primary key; the writer then undoes these and takes the staging way.
#: `written_at` is then the transaction's start (the column's default), a few ms before
#: the staging insert's statement time.
COPY_CHUNKS = (f"COPY chunks ({', '.join(n for n, _ in CHUNKS.columns)}) "
               "FROM STDIN (FORMAT BINARY)")
COPY_DETECTIONS = (f"COPY detections ({', '.join(n for n, _ in DETECTIONS.columns)}) "
                   "FROM STDIN (FORMAT BINARY)")

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


def chunk_row(d: AnyDetection) -> tuple[Any, ...]:
    """The chunk row as values in CHUNKS' column order (for psycopg's write_row); the
    sink sends encode_chunks' bytes, which a test holds equal to these.
    Raises BadValue for an embedding that is not base64 of float16 values."""
    a, t = d.audio, d.timing
    top = d.top_k[0]
    start = d.chunk_start
    return (
        d.chunk_id.bytes, start // 1000 - PG_EPOCH_US, start, d.sample_rate, top.probability,
        len(d.detections), a.rms_dbfs, a.noise_floor_dbfs, a.peak_dbfs, a.clipping_ratio,
        a.silence_ratio, a.spectral_centroid_hz, a.dc_offset,
        t.captured_at // 1000 - PG_EPOCH_US, t.published_at // 1000 - PG_EPOCH_US,
        t.consumed_at // 1000 - PG_EPOCH_US, t.scored_at // 1000 - PG_EPOCH_US,
        t.decode_ms, t.features_ms, t.inference_ms, d.batch_size,
        d.station_id, d.source, d.bundle_version, top.label, _json(d.top_k),
        _json(t.branch_ms), d.worker_id,
        None if d.windows is None else _json(d.windows), embedding_bytes(d.embedding_f16),
    )


def detection_rows(d: AnyDetection) -> Iterator[tuple[Any, ...]]:
    """The chunk's detection rows in DETECTIONS' column order (see chunk_row)."""
    if not d.detections:
        return
    chunk_id, start, station = d.chunk_id.bytes, d.chunk_start // 1000 - PG_EPOCH_US, d.station_id
    for s in d.detections:
        yield (chunk_id, start, s.probability, s.label, station, s.common_name,
               s.window_start_s, s.window_end_s, s.in_range)


# ---- binary COPY, encoded here ------------------------------------------------------------
# PostgreSQL's binary COPY format: a signature, flags and header-extension length (both 0),
# then per row an int16 field count and per field an int32 byte length (-1: NULL) and the
# value's binary send format (network byte order): uuid 16 bytes, timestamptz/bigint int64,
# integer int32, smallint int16, real float4, boolean one byte, text UTF-8, bytea as is;
# an int16 -1 ends the data. Made here rather than by psycopg's write_row so that the sink
# can encode a batch on its consuming thread, with no connection, while the writer thread
# waits on PostgreSQL; and a whole row's fixed columns go in one struct.pack, repeated
# strings (stations, labels, versions) are encoded once.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">i").pack
_FLOAT4 = struct.Struct(">if").pack
_BOOL = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00"}
#: Field count and the 21 fixed-width columns of CHUNKS, each preceded by its length.
_CHUNK_FIXED = struct.Struct(">h i16s iq iq ii if ih if if if if if if if iq iq iq iq if if if ii")
#: Field count and the 3 fixed-width columns of DETECTIONS (chunk_id, chunk_start, probability).
_DETECTION_FIXED = struct.Struct(">h i16s iq if")
_FOUR_NULLS = _NULL * 4
_TEXTS: dict[str, bytes] = {}
_TEXTS_LIMIT = 10_000


def _text(value: str) -> bytes:
    """A text field (length + UTF-8); strings seen before come from a bounded cache."""
    field = _TEXTS.get(value)
    if field is None:
        try:
            raw = value.encode()
        except UnicodeEncodeError as exc:
            raise BadValue(f"text is not UTF-8: {exc}") from None
        field = _LENGTH(len(raw)) + raw
        if len(_TEXTS) >= _TEXTS_LIMIT:
            _TEXTS.clear()  # many distinct strings (free text): start over rather than grow
        _TEXTS[value] = field
    return field


def _json_field(value: Any) -> bytes:
    raw = _json_bytes(value)  # UTF-8 already
    return _LENGTH(len(raw)) + raw


def _jsonb_field(value: Any) -> bytes:
    """A jsonb column's binary form: version 1, then the JSON text."""
    raw = _json_bytes(value)
    return _LENGTH(len(raw) + 1) + b"\x01" + raw


def _optional_float4(value: float | None) -> bytes:
    return _NULL if value is None else _FLOAT4(4, value)


def encode_chunks(results: Iterable[tuple[bytes, AnyDetection]], *, jsonb: bool = False) -> bytes:
    """Binary COPY data of CHUNKS for (chunk_id bytes, result) pairs: chunk_row's values.
    `jsonb`: the JSON columns as the chunks table's jsonb (for COPY_CHUNKS), not the
    staging table's text. Raises BadValue for a value the format cannot carry."""
    parts = [COPY_SIGNATURE]
    append = parts.append
    pack = _CHUNK_FIXED.pack
    json_field = _jsonb_field if jsonb else _json_field
    try:
        for chunk_id, d in results:
            a, t, top, start = d.audio, d.timing, d.top_k[0], d.chunk_start
            embedding = embedding_bytes(d.embedding_f16)
            append(pack(
                30, 16, chunk_id, 8, start // 1000 - PG_EPOCH_US, 8, start, 4, d.sample_rate,
                4, top.probability, 2, len(d.detections), 4, a.rms_dbfs,
                4, a.noise_floor_dbfs, 4, a.peak_dbfs, 4, a.clipping_ratio, 4, a.silence_ratio,
                4, a.spectral_centroid_hz, 4, a.dc_offset,
                8, t.captured_at // 1000 - PG_EPOCH_US, 8, t.published_at // 1000 - PG_EPOCH_US,
                8, t.consumed_at // 1000 - PG_EPOCH_US, 8, t.scored_at // 1000 - PG_EPOCH_US,
                4, t.decode_ms, 4, t.features_ms, 4, t.inference_ms, 4, d.batch_size))
            append(_text(d.station_id))
            append(_text(d.source))
            append(_text(d.bundle_version))
            append(_text(top.label))
            append(json_field(d.top_k))
            append(json_field(t.branch_ms))
            append(_text(d.worker_id))
            append(_NULL if d.windows is None else json_field(d.windows))
            append(_NULL if embedding is None else _LENGTH(len(embedding)) + embedding)
    except (struct.error, OverflowError) as exc:
        raise BadValue(f"a chunk value does not fit its column: {exc}") from None
    parts.append(COPY_TRAILER)
    return b"".join(parts)


def encode_detections(results: Iterable[tuple[bytes, AnyDetection]], *,
                      first_per_label: bool = False) -> bytes | None:
    """Binary COPY data of DETECTIONS for (chunk_id bytes, result) pairs (detection_rows'
    values), or None when the results have no detection rows. `first_per_label`: a
    chunk's first row of each label only, as the staging insert's ON CONFLICT keeps (a
    windowed result may name a label in several windows), for COPY_DETECTIONS."""
    parts = [COPY_SIGNATURE]
    append = parts.append
    pack = _DETECTION_FIXED.pack
    try:
        for chunk_id, d in results:
            if not d.detections:
                continue
            start, station = d.chunk_start // 1000 - PG_EPOCH_US, _text(d.station_id)
            rows = d.detections
            if first_per_label and len(rows) > 1:
                seen: set[str] = set()
                rows = [s for s in rows if not (s.label in seen or seen.add(s.label))]
            for s in rows:
                append(pack(9, 16, chunk_id, 8, start, 4, s.probability))
                append(_text(s.label))
                append(station)
                if (s.common_name is None and s.window_start_s is None
                        and s.window_end_s is None and s.in_range is None):
                    append(_FOUR_NULLS)  # fusion bundles: none of the windowed fields
                else:
                    append(_NULL if s.common_name is None else _text(s.common_name))
                    append(_optional_float4(s.window_start_s))
                    append(_optional_float4(s.window_end_s))
                    append(_NULL if s.in_range is None else _BOOL[s.in_range])
    except (struct.error, OverflowError) as exc:
        raise BadValue(f"a detection value does not fit its column: {exc}") from None
    if len(parts) == 1:
        return None
    parts.append(COPY_TRAILER)
    return b"".join(parts)


def heartbeat_row(h: Heartbeat) -> tuple[Any, ...]:
    return (
        h.station_id, pg_micros(h.sent_at), h.software_version, h.bundle_version,
        h.disk_free_bytes, h.spool_depth, h.spool_bytes,
        _pg_micros_or_none(h.oldest_spooled_chunk_start), h.evicted_chunks,
        h.cpu_temperature_c, h.dropped_samples, h.overruns, h.gaps, h.gap_ns_total,
        h.clock_offset_ms, h.edge_scored, h.edge_skipped,
    )


def drift_row(r: DriftReport) -> tuple[Any, ...]:
    return (
        r.station_id, r.check, r.kind, pg_micros(r.window_start), pg_micros(r.window_end),
        r.value, r.threshold, r.alert, _json(r.reference), r.detail, pg_micros(r.created_at),
    )


def seen_ranges(pairs: Iterable[tuple[str, int]]) -> tuple[list[str], list[int], list[int]]:
    """(key, time) pairs -> sorted keys with their earliest and latest time, as arrays."""
    spans: dict[str, tuple[int, int]] = {}
    for key, ns in pairs:
        low, high = spans.get(key, (ns, ns))
        spans[key] = (min(low, ns), max(high, ns))
    keys = sorted(spans)
    return keys, [spans[k][0] for k in keys], [spans[k][1] for k in keys]
