"""The sink: results from Kafka into PostgreSQL, each exactly once, nothing lost.

    consume (read committed) -> parse -> batch -> write (writer thread) -> commit offsets

- Offsets are committed only after the database committed the batch, in one Kafka
  transaction with the dead-letter copies of its bad messages. A crash anywhere before
  that redelivers the batch: the idempotent writes skip what is already stored, and
  the aborted copies are made once more, so each bad message has exactly one.
- While batch N is written in the writer thread, the main thread fills batch N+1 and
  encodes its COPY data (ResultWriter.prepare), so Python and PostgreSQL work at the
  same time: the writer thread only ships bytes and waits. N's Kafka commit is made
  after N+1 is handed to the writer, so the database never idles through it.
- Database down or restarting: consumption pauses (the consumer keeps polling, so it
  stays in its group), the batch is retried with exponential backoff, nothing is
  committed; when the database answers, the batch is written, committed, and
  consumption resumes where it stopped.
- A message that does not parse, whose times are implausible (`intake` settings), or
  with a value the database refuses, goes to the dead-letter topic with the reason; the
  rest of its batch is stored. No input stops the sink.
- A detection whose bundle version `models register` never vouched for is dead-lettered
  too (`unregistered_bundle`): results forged by hand or made by a misconfigured worker
  never take a chunk's place ahead of the real result (sinks/bundle_registry.py).
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from soundscape.counters import Counters
from soundscape.detection_decoder import DETECTION_TYPES, AnyDetection, decode_detection
from soundscape.envelope import CHUNK_NAMESPACE, chunk_id_for
from soundscape.errors import ServiceError
from soundscape.intake import IMPLAUSIBLE_TIME, TimeWindow
from soundscape.kafka_clients import consumer_config, raise_if_fatal
from soundscape.logs import get_logger
from soundscape.messages import Detection, DriftReport, Heartbeat, MessageError, parse
from soundscape.settings import Settings
from soundscape.stall_dump import StallDump
from soundscape.sinks import metrics
from soundscape.sinks.bundle_registry import UNREGISTERED_BUNDLE
from soundscape.sinks.dead_letters import TransactionalCommitter
from soundscape.sinks.migrate import head_revision
from soundscape.sinks.writer import (
    DatabaseUnavailable,
    PreparedBatch,
    ResultBatch,
    ResultWriter,
    RowsRejected,
    WriteCounts,
)

log = get_logger(__name__)

Result = AnyDetection | Heartbeat | DriftReport


@dataclass(slots=True)
class Record:
    message: Result
    source: Message


@dataclass
class InFlight:
    """Messages consumed and not yet committed: their parsed records and next offsets."""

    records: list[Record] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: list[tuple[Message, str]] = field(default_factory=list)  # (message, reason)
    started: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.offsets

    def note(self, msg: Message) -> None:
        if not self.offsets:
            self.started = time.monotonic()
        self.offsets[(msg.topic(), msg.partition())] = msg.offset() + 1

    def commit_list(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in sorted(self.offsets.items())]


@dataclass
class Stored:
    counts: WriteCounts
    rejected: list[tuple[Record, str]]


@dataclass
class SinkStats(Counters):
    consumed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    commits: int = 0
    outages: int = 0
    retries: int = 0
    written: WriteCounts = field(default_factory=WriteCounts)

    @property
    def stored(self) -> int:
        """Messages that made a new row (the rest were duplicates or expired)."""
        return self.written.chunks + self.written.heartbeats + self.written.drift_reports

    @property
    def duplicates(self) -> int:
        return self.written.duplicates

    def as_dict(self) -> dict[str, Any]:
        w = self.written
        return {
            "consumed": self.consumed, "stored": self.stored, "duplicates": w.duplicates,
            "expired": w.expired, "dead_lettered": self.dead_lettered, "batches": self.batches,
            "commits": self.commits, "outages": self.outages, "retries": self.retries,
            "rows_chunks": w.chunks, "rows_detections": w.detections,
            "rows_heartbeats": w.heartbeats, "rows_drift_reports": w.drift_reports,
        }


def to_batch(records: list[Record]) -> ResultBatch:
    batch = ResultBatch()
    for record in records:
        message = record.message
        if isinstance(message, DETECTION_TYPES):
            batch.detections.append(message)
        elif isinstance(message, Heartbeat):
            batch.heartbeats.append(message)
        else:
            batch.drift.append(message)
    return batch


_NAMESPACE = CHUNK_NAMESPACE.bytes


def derived_chunk_id_bytes(station_id: str, chunk_start: int) -> bytes:
    """`chunk_id_for(...).bytes` without building a UUID object (UUIDv5 = SHA-1, RFC 4122):
    the sink checks every detection, so this runs tens of thousands of times a second."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + f"{station_id}/{chunk_start}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return bytes(digest[:16])


def implausible_times(message: Result, times: TimeWindow) -> str | None:
    """The first time of a result that no station could have meant, or None."""
    if isinstance(message, DETECTION_TYPES):
        kind, stamps = "Detection", [("chunk_start", message.chunk_start)]
    elif isinstance(message, Heartbeat):
        kind, stamps = "Heartbeat", [("sent_at", message.sent_at)]
    else:
        kind = "DriftReport"
        stamps = [("window_start", message.window_start), ("window_end", message.window_end)]
    for name, ns in stamps:
        problem = times.problem(name, ns)
        if problem is not None:
            return f"{IMPLAUSIBLE_TIME}: {kind}.{problem}"
    return None


def check_identity(message: Result) -> None:
    """A detection's chunk_id must be the derived one: every write is idempotent on it."""
    if isinstance(message, DETECTION_TYPES) and message.chunk_id.bytes != derived_chunk_id_bytes(
        message.station_id, message.chunk_start
    ):
        expected = chunk_id_for(message.station_id, message.chunk_start)
        raise MessageError(
            f"Detection: chunk_id {message.chunk_id} is not the id of "
            f"{message.station_id}/{message.chunk_start} ({expected})"
        )


class SinkService:
    """`run()` blocks until `request_stop()`; `health()` may be called from any thread."""

    name = "sink"

    def __init__(
        self,
        settings: Settings,
        *,
        schema: str | None = None,
        group_id: str | None = None,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or settings.sink.group_id
        self.stats = SinkStats()
        #: Off (0) unless the process's own service arms it (`soundscape sink` does).
        self.stall_dump = StallDump(0)
        self._stop = threading.Event()
        self._kinds: dict[str, type[Result]] = {
            settings.topics.detections: Detection,
            settings.topics.heartbeats: Heartbeat,
            settings.topics.drift: DriftReport,
        }
        self._writer = ResultWriter(settings, schema=schema)
        self._times = TimeWindow.from_settings(settings.intake)
        self._consumer = Consumer(
            consumer_config(settings, self.group_id, **(consumer_overrides or {}))
        )
        self._committer = TransactionalCommitter(settings, self._consumer, self.group_id,
                                                 rejected_by=f"sink/{self.group_id}")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        self._filling = InFlight()
        self._pending: tuple[InFlight, Future[Stored]] | None = None
        # the filling batch's COPY data, made before waiting for the pending one: for
        # that InFlight object and that many records only (an outage's polling or a
        # rebalance can change either meanwhile, and then it is made again)
        self._prepared: tuple[InFlight, int, PreparedBatch] | None = None
        self._paused = False
        self._database_up = False
        self._running = False
        self._assigned: set[tuple[str, int]] = set()
        self._last_commit: float | None = None
        self._last_maintenance = 0.0
        self._last_progress = time.monotonic()
        self._registered: set[str] = set()

    # ---- control -----------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def database_backend_pid(self) -> int | None:
        return self._writer.backend_pid()

    def health(self) -> dict[str, Any]:
        return {
            "healthy": self._running and self._database_up,
            "running": self._running,
            "database": "up" if self._database_up else "down",
            "paused": self._paused,
            "assigned_partitions": len(self._assigned),
            "seconds_since_commit": (
                round(time.monotonic() - self._last_commit, 1) if self._last_commit else None
            ),
            **self.stats.as_dict(),
        }

    def run(self) -> SinkStats:
        self._running = True
        try:
            if not self._wait_for_database():
                return self.stats
            self._consumer.subscribe(
                list(self._kinds), on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info("sink consuming", topics=list(self._kinds), group=self.group_id,
                     batch_size=self.settings.sink.batch_size)
            while not self.stopping:
                self.stall_dump.turn()
                if self._paused and self._pending is None:
                    self._await_database()
                    continue
                self._fill()
                if self._batch_ready():
                    self._prepare_filling()  # while the writer still works on the last
                    finished = self._collect_pending()
                    if not self.stopping:
                        self._maybe_maintain()
                    self._submit()
                    if finished is not None:  # commit N while the writer writes N+1
                        self._complete(*finished)
                elif self._pending is not None and self._pending[1].done():
                    self._finish_pending()
                self._log_progress()
            self._shutdown()
        finally:
            self.stall_dump.stop()
            self._running = False
            self._executor.shutdown(wait=True)
            self._writer.close()
        return self.stats

    # ---- consuming ---------------------------------------------------------------------
    def _fill(self) -> None:
        """Consume until the batch is full or its time is up (or briefly, if empty)."""
        sink = self.settings.sink
        deadline = time.monotonic() + sink.batch_timeout_ms / 1000
        while not self.stopping and len(self._filling.records) < sink.batch_size:
            if not self._filling.empty:
                deadline = min(deadline, self._filling.started + sink.batch_timeout_ms / 1000)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            wanted = min(sink.batch_size - len(self._filling.records), 1000)
            for msg in self._consumer.consume(num_messages=wanted, timeout=min(remaining, 0.2)):
                self._take(msg)

    def _take(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise_if_fatal(error)
                log.warning("consumer error", error=error.str())
            return
        self.stats.consumed += 1
        kind = self._kinds.get(msg.topic())
        try:
            if kind is None:
                raise MessageError(f"no message type for topic {msg.topic()}")
            # detections, the bulk, through the fast path (pydantic decides what it refuses)
            message = (decode_detection(msg.value()) if kind is Detection
                       else parse(kind, msg.value()))
            check_identity(message)
            problem = implausible_times(message, self._times)
            if problem is not None:
                raise MessageError(problem)
        except MessageError as exc:
            self._filling.rejected.append((msg, str(exc)))
        else:
            self._filling.records.append(Record(message, msg))
        self._filling.note(msg)

    def _batch_ready(self) -> bool:
        if self._filling.empty:
            return False
        full = len(self._filling.records) >= self.settings.sink.batch_size
        waited = time.monotonic() - self._filling.started
        return full or waited >= self.settings.sink.batch_timeout_ms / 1000 or self.stopping

    # ---- writing -----------------------------------------------------------------------
    def _prepare_filling(self) -> None:
        """Encode the filling batch now (see `_prepared`); a value that cannot be encoded
        leaves it to the writer thread, which finds and dead-letters it."""
        filling = self._filling
        try:
            prepared = self._writer.prepare(to_batch(filling.records))
        except RowsRejected:
            self._prepared = None
            return
        self._prepared = (filling, len(filling.records), prepared)

    def _submit(self) -> None:
        inflight, self._filling = self._filling, InFlight()
        ready, self._prepared = self._prepared, None
        prepared = None
        if ready is not None and ready[0] is inflight and ready[1] == len(inflight.records):
            prepared = ready[2]
        self._pending = (inflight, self._executor.submit(self._store, inflight.records, prepared))

    def _store(self, records: list[Record], prepared: PreparedBatch | None = None) -> Stored:
        """Refuse results of unregistered bundles, then write the rest (`prepared`: the
        COPY data of all of `records`, used if none is refused)."""
        records, refused = self._registered_only(records)
        stored = self._write(records, None if refused else prepared)
        stored.rejected += refused
        return stored

    def _registered_only(self, records: list[Record]) -> tuple[list[Record], list[tuple[Record, str]]]:
        """Split off detections whose bundle version is not registered (`sink.bundles`).
        Registered versions are remembered (registration is never withdrawn); unknown
        ones are asked for at every batch, so a bundle registered now is stored now."""
        if self.settings.sink.bundles == "any":
            return records, []
        versions = {r.message.bundle_version for r in records if isinstance(r.message, DETECTION_TYPES)}
        unknown = versions - self._registered
        if unknown:
            self._registered |= self._writer.registered_bundles(unknown)
            unknown -= self._registered
        if not unknown:
            return records, []
        kept, refused = [], []
        for record in records:
            message = record.message
            if isinstance(message, DETECTION_TYPES) and message.bundle_version in unknown:
                refused.append((record, f"{UNREGISTERED_BUNDLE}: bundle version "
                                        f"{message.bundle_version!r} is not registered "
                                        "(`soundscape models register`)"))
            else:
                kept.append(record)
        return kept, refused

    def _write(self, records: list[Record], prepared: PreparedBatch | None = None) -> Stored:
        """Write records; on a refused value, halve until the culprits stand alone."""
        if not records:
            return Stored(WriteCounts(), [])
        started = time.monotonic()
        try:
            if prepared is not None:
                counts = self._writer.write_prepared(prepared)
            else:
                counts = self._writer.write(to_batch(records))
        except RowsRejected as exc:
            if len(records) == 1:
                return Stored(WriteCounts(), [(records[0], f"database refused: {exc}")])
            middle = len(records) // 2
            first, second = self._write(records[:middle]), self._write(records[middle:])
            first.counts.add(second.counts)
            return Stored(first.counts, first.rejected + second.rejected)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_MESSAGES.observe(len(records))
        return Stored(counts, [])

    def _finish_pending(self) -> None:
        """Wait for the batch being written, then commit it."""
        finished = self._collect_pending()
        if finished is not None:
            self._complete(*finished)

    def _collect_pending(self) -> tuple[InFlight, Stored] | None:
        """Wait for the batch being written; on an outage retry it here until it lands.
        The batch stored, to be committed by the caller; None if there is none to commit."""
        if self._pending is None:
            return None
        inflight, future = self._pending
        try:
            stored: Stored | None = future.result()
        except DatabaseUnavailable as exc:
            stored = self._retry_until_stored(inflight, exc)
        if self._pending is None or self._pending[0] is not inflight:
            return None  # a rebalance dealt with it meanwhile
        self._pending = None
        return None if stored is None else (inflight, stored)

    def _retry_until_stored(self, inflight: InFlight, error: Exception) -> Stored | None:
        self._enter_outage(error)
        delay = self.settings.sink.retry_initial_ms / 1000
        while True:
            if not self._sleep_polling(delay):
                return None
            if self._pending is None or self._pending[0] is not inflight:
                return None
            self.stats.retries += 1
            metrics.RETRIES.inc()
            try:
                return self._store(inflight.records)
            except DatabaseUnavailable as exc:
                delay = min(delay * 2, self.settings.sink.retry_max_ms / 1000)
                log.warning("database still unavailable", error=str(exc), retry_in_s=delay,
                            waiting_messages=len(inflight.records))

    def _complete(self, inflight: InFlight, stored: Stored) -> None:
        rejects = inflight.rejected + [(record.source, reason) for record, reason in stored.rejected]
        self._commit(inflight, rejects)
        self._mark_database_up()
        self._count(inflight, stored)

    def _commit(self, inflight: InFlight, rejects: list[tuple[Message, str]]) -> None:
        """Offsets and dead-letter copies in one transaction (the rows are already in: a
        redelivery after a failure here is skipped as duplicates)."""
        try:
            self._committer.commit(inflight.commit_list(), rejects)
        except ServiceError:
            metrics.COMMITS.labels("failed").inc()
            raise
        for msg, reason in rejects:
            log.warning("message dead-lettered", topic=msg.topic(), partition=msg.partition(),
                        offset=msg.offset(), reason=reason[:300])
        self.stats.dead_lettered += len(rejects)
        metrics.MESSAGES.labels("dead_lettered").inc(len(rejects))
        self.stats.commits += 1
        self._last_commit = time.monotonic()
        metrics.COMMITS.labels("ok").inc()
        metrics.LAST_COMMIT.set_to_current_time()

    def _count(self, inflight: InFlight, stored: Stored) -> None:
        counts = stored.counts
        new = counts.chunks + counts.heartbeats + counts.drift_reports
        self.stats.batches += 1
        self.stats.written.add(counts)
        metrics.MESSAGES.labels("stored").inc(new)
        metrics.MESSAGES.labels("duplicate").inc(counts.duplicates)
        metrics.MESSAGES.labels("expired").inc(counts.expired)
        for table in ("chunks", "detections", "heartbeats", "drift_reports"):
            metrics.ROWS.labels(table).inc(getattr(counts, table))
        metrics.PARTITIONS_CREATED.inc(len(counts.partitions_created))
        now_ns = time.time_ns()
        for record in inflight.records:  # live results only: replays are old by design
            message = record.message
            if isinstance(message, DETECTION_TYPES) and message.source == "live":
                metrics.RESULT_AGE.observe((now_ns - message.timing.captured_at) / 1e9)

    # ---- outages -----------------------------------------------------------------------
    def _enter_outage(self, error: Exception) -> None:
        self._database_up = False
        metrics.DATABASE_UP.set(0)
        if not self._paused:
            self.stats.outages += 1
            self._set_paused(True)
            log.error("database unavailable: consumption paused, nothing committed",
                      error=str(error))

    def _mark_database_up(self) -> None:
        if not self._database_up:
            self._database_up = True
            metrics.DATABASE_UP.set(1)
        if self._paused:
            self._set_paused(False)
            log.info("database back: consumption resumed")

    def _set_paused(self, paused: bool) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            (self._consumer.pause if paused else self._consumer.resume)(assignment)
        self._paused = paused
        metrics.PAUSED.set(1 if paused else 0)

    def _sleep_polling(self, seconds: float) -> bool:
        """Wait, polling the (paused) consumer so it stays in its group; False on stop."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stopping:
                return False
            msg = self._consumer.poll(min(0.1, max(deadline - time.monotonic(), 0)))
            if msg is not None:
                self._take(msg)  # fetched before the pause took effect: keep it
        return not self.stopping

    def _await_database(self) -> None:
        """Paused with nothing to retry (a rebalance took the batch): probe until it answers."""
        delay = self.settings.sink.retry_initial_ms / 1000
        while self._sleep_polling(delay):
            try:
                self._writer.ping()
            except DatabaseUnavailable:
                delay = min(delay * 2, self.settings.sink.retry_max_ms / 1000)
                continue
            self._mark_database_up()
            return

    def _wait_for_database(self) -> bool:
        """At start: wait until the database answers at the right schema; run maintenance."""
        delay = self.settings.sink.retry_initial_ms / 1000
        while not self.stopping:
            try:
                self._check_schema()
                self._maintain()
                self._mark_database_up()
                return True
            except DatabaseUnavailable as exc:
                self._database_up = False
                log.warning("waiting for the database", error=str(exc), retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.sink.retry_max_ms / 1000)
        return False

    def _check_schema(self) -> None:
        import psycopg

        conn = self._writer.connection()
        head = head_revision()
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        except psycopg.OperationalError as exc:
            self._writer.close()
            raise DatabaseUnavailable(str(exc)) from exc
        if row is None or row[0] != head:
            raise ServiceError(
                f"the database schema is at {row[0] if row else 'nothing'}, "
                f"this sink needs {head}",
                hint="run `soundscape db upgrade`",
            )

    # ---- maintenance -------------------------------------------------------------------
    def _maintain(self) -> None:
        report = self._writer.maintain()
        self._last_maintenance = time.monotonic()
        if report.created or report.dropped:
            log.info("partition maintenance", **report.as_dict())

    def _maybe_maintain(self) -> None:
        interval = self.settings.sink.maintenance_interval_s
        if interval and time.monotonic() - self._last_maintenance >= interval:
            try:
                self._maintain()
            except DatabaseUnavailable as exc:
                log.warning("partition maintenance postponed", error=str(exc))
                self._last_maintenance = time.monotonic() - interval + 60

    # ---- rebalances and stopping -------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing: `partitions` are only those added to what is held.
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        cooperative = self.settings.kafka.assignment_strategy.startswith("cooperative")
        if self._database_up:
            if not cooperative:
                self._paused = False  # an eager assignment is all fresh and unpaused
        else:
            # assigning here stops the client assigning after us; the new ones wait too
            if cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            consumer.pause(partitions)
            self._paused = True
        metrics.PAUSED.set(1 if self._paused else 0)
        log.info("partitions assigned", count=len(partitions), paused=self._paused)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before partitions move: store and commit what we hold, or let it go uncommitted."""
        self._settle(try_store=not self._paused, why="partitions revoked")
        self._release(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(try_store=False, why="partitions lost")
        self._release(consumer, partitions)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let partitions go unpaused. librdkafka keeps a partition's pause across a revoke
        and a later re-assignment to this consumer: one paused in an outage, moved to
        another member and given back after the database came back would never be
        fetched again (a chaos run saw two partitions stand still so, every process alive;
        tests/integration/sinks/test_outage.py)."""
        if self._paused and partitions:
            try:
                consumer.resume(partitions)
            except KafkaException as exc:  # not assigned any more: nothing left to resume
                log.debug("resume before release refused", error=str(exc))
        self._assigned -= {(p.topic, p.partition) for p in partitions}

    def _settle(self, try_store: bool, why: str) -> None:
        held: list[InFlight] = []
        if self._pending is not None:
            inflight, future = self._pending
            self._pending = None
            try:
                stored = future.result()
            except DatabaseUnavailable:
                held.append(inflight)
            else:
                self._complete(inflight, stored) if try_store else held.append(inflight)
        if not self._filling.empty:
            held.append(self._filling)
            self._filling = InFlight()
        for inflight in held:
            if try_store and self._store_once(inflight):
                continue
            log.warning("uncommitted messages left for redelivery", why=why,
                        messages=len(inflight.records))

    def _store_once(self, inflight: InFlight) -> bool:
        try:
            stored = self._store(inflight.records)
        except DatabaseUnavailable:
            return False
        self._complete(inflight, stored)
        return True

    def _shutdown(self) -> None:
        """Stop: store and commit what is held if the database answers; else leave it."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            try:
                self._complete(pending[0], pending[1].result())
            except DatabaseUnavailable:
                self._filling.records[:0] = pending[0].records
                self._filling.rejected[:0] = pending[0].rejected
                for key, offset in pending[0].offsets.items():
                    self._filling.offsets.setdefault(key, offset)
        if not self._filling.empty and not self._paused:
            inflight, self._filling = self._filling, InFlight()
            if not self._store_once(inflight):
                log.warning("stopping with uncommitted messages; they will be redelivered",
                            messages=len(inflight.records))
        self._committer.close()
        self._consumer.close()
        log.info("sink stopped", **self.stats.as_dict())

    def _log_progress(self, every_s: float = 30.0) -> None:
        if time.monotonic() - self._last_progress >= every_s:
            self._last_progress = time.monotonic()
            log.info("sink progress", paused=self._paused, **self.stats.as_dict())


def tune_gc() -> None:
    """The sink keeps two batches of parsed messages alive (~30 objects each); with
    CPython's default thresholds the cycle collector rescans them again and again, which
    cost 60 % more CPU per result here. Messages hold no cycles; refcounting frees them.
    For a process that runs a sink (the command, the benchmarks)."""
    gc.set_threshold(200_000, 50, 100)


def run_until(service: SinkService, condition: Callable[[SinkService], bool],
              timeout_s: float) -> threading.Thread:
    """Run the service in a thread that stops it once `condition` holds (tests, bench)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not condition(service):
            time.sleep(0.05)
        service.request_stop()

    runner = threading.Thread(target=service.run, name="sink", daemon=True)
    runner.start()
    threading.Thread(target=watch, name="sink-watch", daemon=True).start()
    return runner
