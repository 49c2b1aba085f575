"""Write a batch of parsed results to PostgreSQL in one transaction, idempotently.

Upsert stations and models, COPY a batch's new chunks and their detections straight
into their tables, and, when the batch holds a chunk stored before (a redelivery, a
replay), undo that in a savepoint and go through staging tables and INSERT ... ON
CONFLICT DO NOTHING instead; heartbeats and drift reports always go that way (see
staging.py). Errors are sorted for the caller:
`DatabaseUnavailable` (connection lost, server restarting, lock timeout: retry the same
batch later) and `RowsRejected` (the database, or the writer before it, refuses some
value: find the message and dead-letter it). Anything else is a bug or a schema problem
and propagates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.string import BytesBinaryDumper

from soundscape.database import Role
from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.detection_decoder import AnyDetection
from soundscape.settings import Settings
from soundscape.sinks import staging
from soundscape.sinks.bundle_registry import registered_among
from soundscape.sinks.connection import connect
from soundscape.sinks.partition_plan import floor_to_interval, retention_horizon
from soundscape.sinks.partitions import MaintenanceReport, PartitionManager, to_ns
from soundscape.result_sink import (  # the contract; re-exported for the sink's users
    DatabaseUnavailable as DatabaseUnavailable,
    ResultBatch as ResultBatch,
    RowsRejected as RowsRejected,
    WriteCounts as WriteCounts,
)

log = get_logger(__name__)


@dataclass
class PreparedBatch:
    """A batch ready for one transaction (ResultWriter.prepare): what survived the
    retention check, the COPY data of its chunk and detection rows, and the stations'
    and models' first and last times."""

    batch: ResultBatch
    counts: WriteCounts
    chunks: bytes | None  # for staging.COPY_CHUNKS (jsonb)
    detections: bytes | None  # for staging.COPY_DETECTIONS (a chunk's labels once)
    stations: tuple[list[str], list[int], list[int]]
    models: tuple[list[str], list[int], list[int]]


class ResultWriter:
    """Owns one connection (reopened after a failure); use from one thread."""

    def __init__(
        self, settings: Settings, schema: str | None = None,
        application_name: str = "soundscape-sink", role: Role = "writer",
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.application_name = application_name
        self.role: Role = role
        self.partitions = PartitionManager(settings)
        #: batches with a chunk stored before, written through the staging tables
        self.staged_batches = 0
        self._conn: psycopg.Connection[Any] | None = None

    # ---- connection --------------------------------------------------------------------
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        self.close()
        try:
            conn = connect(self.settings, schema=self.schema,
                           application_name=self.application_name, role=self.role)
            # bytea (and the uuids sent as their bytes) through psycopg's C dumper: the
            # one registered for the oid by default is a Python class (psycopg.Binary's)
            conn.adapters.register_dumper(bytes, BytesBinaryDumper)
            for table in staging.ALL:
                conn.execute(table.create_sql())
            conn.execute(staging.STORED_CHUNKS)
            self.partitions.refresh(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(_first_line(exc)) from exc
        self._conn = conn
        return conn

    def backend_pid(self) -> int | None:
        """Process id of the server backend serving this writer (for CPU accounting)."""
        return self._conn.info.backend_pid if self._conn is not None else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        try:
            self.connection().execute("SELECT 1")
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(_first_line(exc)) from exc

    def registered_bundles(self, versions: set[str]) -> set[str]:
        """Those of `versions` that `models register` vouched for."""
        try:
            return registered_among(self.connection(), versions)
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(_first_line(exc)) from exc

    def maintain(self, now: datetime | None = None, dry_run: bool = False) -> MaintenanceReport:
        try:
            return self.partitions.maintain(self.connection(), now, dry_run=dry_run)
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(_first_line(exc)) from exc

    # ---- writing -----------------------------------------------------------------------
    def write(self, batch: ResultBatch, now: datetime | None = None) -> WriteCounts:
        return self.write_prepared(self.prepare(batch, now))

    def prepare(self, batch: ResultBatch, now: datetime | None = None) -> PreparedBatch:
        """The batch as COPY data and per-batch aggregates: pure Python, no connection, so
        the sink runs it on its consuming thread while this writer's thread waits on the
        database. Raises RowsRejected for a value that cannot be encoded."""
        counts = WriteCounts()
        batch = self._drop_expired(batch, now or datetime.now(UTC), counts)
        first = _first_of_each_chunk(batch.detections)
        try:
            chunks = staging.encode_chunks(first, jsonb=True) if first else None
            detections = (staging.encode_detections(first, first_per_label=True)
                          if first else None)
        except staging.BadValue as exc:  # refused here, before the database saw it
            raise RowsRejected(str(exc)) from exc
        return PreparedBatch(
            batch, counts, chunks, detections,
            stations=staging.seen_ranges(
                [(d.station_id, d.chunk_start) for d in batch.detections]
                + [(h.station_id, h.sent_at) for h in batch.heartbeats]
                + [(r.station_id, r.window_start) for r in batch.drift]),
            models=staging.seen_ranges(
                [(d.bundle_version, d.timing.scored_at) for d in batch.detections]),
        )

    def write_prepared(self, prepared: PreparedBatch) -> WriteCounts:
        """Write a prepared batch in one transaction (see the module docstring for errors)."""
        counts, batch = prepared.counts, prepared.batch
        if not len(batch):
            return counts
        try:
            try:
                self._write(prepared, counts)
            except psycopg.errors.CheckViolation as exc:
                if "no partition of relation" not in str(exc):
                    raise
                # Someone else dropped a partition this writer still believed in (e.g.
                # `db maintain` with another retention): re-read the catalogue, once.
                log.warning("partition missing; catalogue re-read", error=_first_line(exc))
                self.partitions.refresh(self.connection())
                self._write(prepared, counts)
        except psycopg.OperationalError as exc:
            self.close()
            raise DatabaseUnavailable(_first_line(exc)) from exc
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if "no partition of relation" in str(exc):
                raise ServiceError(f"a row has no partition to go to: {_first_line(exc)}") from exc
            raise RowsRejected(_first_line(exc)) from exc
        except staging.BadValue as exc:  # refused here, before the database saw it
            raise RowsRejected(str(exc)) from exc
        counts.duplicates = (
            len(batch.detections) - counts.chunks
            + len(batch.heartbeats) - counts.heartbeats
            + len(batch.drift) - counts.drift_reports
        )
        return counts

    def _write(self, prepared: PreparedBatch, counts: WriteCounts) -> None:
        """One transaction, one round trip a statement: upsert stations and models, COPY
        the chunks and detections straight into their tables (prepared bytes) or, when a
        chunk of the batch is stored already, through the staging tables with INSERT ...
        SELECT ... ON CONFLICT DO NOTHING; heartbeats and drift reports always that way."""
        conn = self.connection()
        batch = prepared.batch
        counts.partitions_created = self._ensure_partitions(conn, batch)
        with conn.transaction(), conn.cursor() as cur:
            if prepared.stations[0]:
                cur.execute(staging.UPSERT_STATIONS, prepared.stations)
            if prepared.models[0]:
                cur.execute(staging.UPSERT_MODELS, prepared.models)
            if prepared.chunks is not None and not self._copy_new(conn, cur, prepared, counts):
                first = _first_of_each_chunk(batch.detections)
                self._copy_data(cur, staging.CHUNKS, staging.encode_chunks(first))
                self._copy_data(cur, staging.DETECTIONS, staging.encode_detections(first))
                counts.chunks = self._insert(cur, staging.CHUNKS, batch.detections)
                counts.detections = self._insert(cur, staging.DETECTIONS, batch.detections)
            self._copy(cur, staging.HEARTBEATS, map(staging.heartbeat_row, batch.heartbeats))
            self._copy(cur, staging.DRIFT, map(staging.drift_row, batch.drift))
            counts.heartbeats = self._insert(cur, staging.HEARTBEATS, batch.heartbeats)
            counts.drift_reports = self._insert(cur, staging.DRIFT, batch.drift)

    def _copy_new(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any],
                  prepared: PreparedBatch, counts: WriteCounts) -> bool:
        """COPY the batch's chunks and detections straight into their tables, in a
        savepoint; False (both undone) when a chunk was stored before (a redelivery, a
        replay, another sink's batch), for the caller to go the staging way."""
        try:
            with conn.transaction():
                counts.chunks = self._copy_data(cur, staging.COPY_CHUNKS, prepared.chunks)
                counts.detections = self._copy_data(cur, staging.COPY_DETECTIONS,
                                                    prepared.detections)
        except psycopg.errors.UniqueViolation:
            self.staged_batches += 1
            counts.chunks = counts.detections = 0
            return False
        return True

    @staticmethod
    def _copy_data(cur: psycopg.Cursor[Any], into: staging.StagingTable | str,
                   data: bytes | None) -> int:
        """COPY data encoded whole (signature to trailer) by staging.encode_*, into a
        staging table or by a COPY statement; the rows copied."""
        if data is None:
            return 0
        sql = into if isinstance(into, str) else into.copy_sql()
        with cur.copy(sql) as copy:
            copy.write(data)
        return max(cur.rowcount, 0)

    @staticmethod
    def _copy(cur: psycopg.Cursor[Any], table: staging.StagingTable, rows: Iterable[tuple[Any, ...]]) -> None:
        iterator = iter(rows)
        first = next(iterator, None)
        if first is None:
            return
        with cur.copy(table.copy_sql()) as copy:
            copy.set_types(table.wire_types)
            copy.write_row(first)
            for row in iterator:
                copy.write_row(row)

    @staticmethod
    def _insert(cur: psycopg.Cursor[Any], table: staging.StagingTable, items: list[Any]) -> int:
        if not items:
            return 0
        cur.execute(table.insert)
        return max(cur.rowcount, 0)

    def _ensure_partitions(self, conn: psycopg.Connection[Any], batch: ResultBatch) -> list[str]:
        created: list[str] = []
        chunk_times = {d.chunk_start for d in batch.detections}
        for table, times in (
            ("chunks", chunk_times),
            ("detections", chunk_times if any(d.detections for d in batch.detections) else ()),
            ("station_heartbeats", {h.sent_at for h in batch.heartbeats}),
            ("drift_reports", {r.window_start for r in batch.drift}),
        ):
            if times:
                created += self.partitions.ensure_covering(conn, table, times)
        return created

    def _drop_expired(self, batch: ResultBatch, now: datetime, counts: WriteCounts) -> ResultBatch:
        """Rows older than the retention keeps would land in a partition about to be
        dropped (or re-create a dropped one): they are counted, not stored."""
        horizon = retention_horizon(now, self.settings.sink.retention_days)
        if horizon is None:
            return batch
        cutoff = to_ns(floor_to_interval(horizon, self.settings.sink.partition_interval))
        kept = ResultBatch(
            [d for d in batch.detections if d.chunk_start >= cutoff],
            [h for h in batch.heartbeats if h.sent_at >= cutoff],
            [r for r in batch.drift if r.window_start >= cutoff],
        )
        counts.expired = len(batch) - len(kept)
        return kept


def _first_of_each_chunk(detections: list[AnyDetection]) -> list[tuple[bytes, AnyDetection]]:
    """One result per chunk, the first, with its chunk_id's bytes (as in the table: a
    batch can hold a redelivery)."""
    seen: set[bytes] = set()
    first = []
    for d in detections:
        key = d.chunk_id.bytes
        if key not in seen:
            seen.add(key)
            first.append((key, d))
    return first


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
