"""`soundscape drift run`: the drift checks as a faust-streaming app over the detections.

One agent reads soundscape.detections.v1 (partitions shared by every worker with the same
`drift.app_id`), feeds each station's `StationDrift`, and publishes what it reports to
soundscape.drift.v1; the sink stores those in drift_reports. The state lives in two faust
tables (changelogs in Kafka, a RocksDB cache under `drift.data_dir`): station metadata by
station, and pane summaries by station and pane. The app runs with faust's
exactly_once guarantee: it reads committed results only, and each chunk's table changes,
reports and offset commit in one transaction, so a stop or a crash neither loses nor
repeats a window.

faust-streaming 0.15 needs five repairs for that guarantee to hold, each below with its
reason: table changes flushed into the transaction before it commits (`ChangelogSends`,
`TableWritesFirst`), no commit in the middle of a chunk (`DriftApp.event_lock`), reports
sent in the chunk's transaction (`DriftStream._send`), no fetching from the
detections before the consumer has sought back to the committed offsets after a
rebalance (`SeekFirstConsumer`), and local RocksDB files emptied at each start
(`fresh_state_dir`). A sixth change is for speed: restoring a table stops at the last
committed record of its changelog instead of waiting 10 s for the commit marker after it
(`changelog_end`).

A timer looks for stations gone silent. Those are the one report not made while
processing a chunk (there is none), so they go out through an ordinary idempotent
producer; their windows are deterministic, so a repeat is stored once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, cast

import faust
from aiokafka.errors import IllegalOperation
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from faust.transport import by_url
from faust.transport.consumer import TransactionManager, ensure_TPset
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.exceptions import FaustError
from faust.types import TP

from soundscape.errors import ServiceError, UserError
from soundscape.kafka_clients import (
    admin_config,
    bootstrap_servers,
    common_config,
    producer_config,
)
from soundscape.logs import get_logger
from soundscape.intake import IMPLAUSIBLE_TIME, TimeWindow
from soundscape.messages import Detection, DriftReport, MessageError, parse
from soundscape.service_runner import EventService, run_service
from soundscape.processors.drift import metrics
from soundscape.processors.drift.changelog_end import MarkerAwareTableManager
from soundscape.processors.drift.publish import publish
from soundscape.processors.drift.station import (
    BaselineSource,
    StationDrift,
    StationMeta,
    iso,
)
from soundscape.processors.drift.summary import NS, Observation, Pane
from soundscape.settings import Settings

log = get_logger(__name__)

STATIONS_TABLE = "drift-stations"
#: Longest a requested stop may take before the process leaves (see DriftWorker).
STOP_TIMEOUT_S = 20.0
#: A caught-up partition with records after the last one processed (an aborted
#: transaction's) counts as done when nothing arrived for this long.
IDLE_S = 5.0
PANES_TABLE = "drift-panes"


class TablePaneStore:
    """A station's panes in the faust panes table, keyed "<station>/<pane start ns>"."""

    def __init__(self, table: Any, station_id: str) -> None:
        self.table = table
        self.prefix = f"{station_id}/"

    def get(self, start: int) -> Pane | None:
        data = self.table.get(self.prefix + str(start))
        return Pane.from_json(data) if data is not None else None

    def put(self, pane: Pane) -> None:
        self.table[self.prefix + str(pane.start)] = pane.to_json()

    def delete(self, start: int) -> None:
        key = self.prefix + str(start)
        if key in self.table:
            del self.table[key]


class NoPanes:
    """For silence checks, which read station metadata only."""

    def get(self, start: int) -> Pane | None:
        return None

    def put(self, pane: Pane) -> None:
        raise AssertionError("silence checks do not write panes")

    def delete(self, start: int) -> None:
        raise AssertionError("silence checks do not delete panes")


def data_dir(settings: Settings) -> Path:
    return settings.drift.data_dir or settings.state_dir / "drift"


def detections_partitions(settings: Settings) -> int:
    """Partitions of the detections topic (the tables must have as many); checks it exists."""
    topic = settings.topics.detections
    try:
        meta = AdminClient(admin_config(settings)).list_topics(topic, timeout=15)
    except Exception as exc:  # noqa: BLE001 - librdkafka raises KafkaException variants
        raise ServiceError(f"cannot reach Kafka: {exc}",
                           hint="is it running? `soundscape infra status`") from None
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise UserError(f"topic {topic} does not exist",
                        hint="create the topics: `soundscape infra topics`")
    return len(found.partitions)


def ensure_changelogs(settings: Settings, partitions: int, timeout_s: float = 30.0) -> list[str]:
    """Create the tables' changelog topics (compacted, as many partitions as detections)
    before faust starts. faust declares them itself, but when its first metadata read
    races the creation it finds 0 partitions and the agent crashes (PartitionsMismatch),
    seen once in three compose runs; topics that exist are left alone. Returns those made."""
    from confluent_kafka.admin import NewTopic

    admin = AdminClient(admin_config(settings))
    app = settings.drift.app_id
    wanted = [f"{app}-{table}-changelog" for table in (STATIONS_TABLE, PANES_TABLE)]
    present = admin.list_topics(timeout=timeout_s).topics
    missing = [name for name in wanted if name not in present]
    if missing:
        futures = admin.create_topics(
            [NewTopic(name, partitions, settings.drift.replication_factor,
                      config={"cleanup.policy": "compact"}) for name in missing],
            operation_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - librdkafka's KafkaException
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ServiceError(f"cannot create {name}: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            topics = admin.list_topics(timeout=timeout_s).topics
            if all(name in topics and len(topics[name].partitions) == partitions
                   and topics[name].error is None for name in missing):
                break
            time.sleep(0.2)
    return missing


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None)
    if kafka.security_protocol.startswith("SASL"):
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise UserError(
                f"security_protocol {kafka.security_protocol} needs a SASL user and password",
                hint="set SOUNDSCAPE_KAFKA__SASL_USERNAME and SOUNDSCAPE_KAFKA__SASL_PASSWORD")
        return faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


class ChangelogSends:
    """Table changes on their way from faust's producer buffer to the producer.

    faust 0.15 sends a table change to its changelog through that buffer (a table is a
    dict: setting a key cannot await the send), drained by a background task, while the
    commit timer adds the offsets of the events processed so far to the transaction and
    commits it without looking at the buffer. The changes of the last events before a
    commit then land in the next transaction; when that one never commits (the worker
    stops, and its last commit covers no new offsets of that partition, or fails), they
    are lost while their events count as done, and a worker recovering the tables from
    the changelog (a new machine, lost RocksDB files) misses those chunks for good.
    """

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer
        self.sending = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._send = buffer._send_pending
        buffer._send_pending = self.send  # the background task's and ours

    async def send(self, message: Any) -> None:
        self.sending += 1
        self.idle.clear()
        try:
            await self._send(message)
        finally:
            self.sending -= 1
            if not self.sending:
                self.idle.set()

    async def flush(self) -> None:
        """Hand every buffered change to the (transactional) producer, in order, and wait
        for the background task's one. (`ProducerBuffer.flush` waits 0.1 s at most.)"""
        while True:
            try:
                message = self.buffer.pending.get_nowait()
            except asyncio.QueueEmpty:
                if not self.sending:
                    return
                await self.idle.wait()
            else:
                await self.send(message)
                self.buffer.message_sent.set()


class TableWritesFirst(TransactionManager):
    """faust's transaction manager, committing between chunks only, once the table changes
    made so far are in the transaction: every chunk's changes and reports then commit
    together, with its offset or before it (a chunk redelivered after that is a duplicate
    to the station's panes, and changes nothing)."""

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        app = cast(DriftApp, self.app)
        async with app.event_lock:
            await app.changelog_sends.flush()
            try:
                return await super().commit(offsets, start_new_transaction=start_new_transaction)
            except IllegalOperation as exc:
                if start_new_transaction:
                    raise
                # faust 0.15 sometimes ends its transactions twice while stopping; the
                # second finds none open. Kafka aborts what the first left, and the next
                # worker redoes it from the committed offsets.
                log.warning("last commit while stopping failed; the next start redoes the "
                            "work since the commit before", error=str(exc))
                return False


class SeekFirstConsumer(AIOKafkaConsumer):
    """faust's consumer, fetching a rebalanced stream partition only after seeking it.

    At the end of a rebalance faust 0.15 resumes the stream partitions, then seeks them to
    the committed offsets, then empties the stream queues (faust-streaming issue 596).
    Records fetched in between reach the agent and are dropped from the queue, or are
    dropped as already read when fetched again from the committed offset: a restart with
    a backlog lost a few chunks of each station. So from an assignment on, stream
    partitions stay paused until faust has sent `on_rebalance_complete` and sought them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._holding = False
        self._seek_allowed = False
        self._held: set[TP] = set()
        super().__init__(*args, **kwargs)

    def hold_streams(self) -> None:
        """Called when partitions are assigned: keep stream partitions paused."""
        self._holding, self._seek_allowed = True, False

    def allow_release(self) -> None:
        """Called on `on_rebalance_complete`: the next seek to committed releases them."""
        self._seek_allowed = True

    def resume_partitions(self, tps: Any) -> None:
        tpset = ensure_TPset(tps)
        if self._holding:
            held = {tp for tp in tpset if not self._is_changelog_tp(tp)}
            self._held |= held
            tpset -= held
        super().resume_partitions(tpset)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        if self._holding and self._seek_allowed:
            held, self._held = self._held, set()
            self._holding = self._seek_allowed = False
            super().resume_partitions(held)


class DriftApp(faust.App):
    """faust's app with the transaction manager and consumer above.

    `event_lock` is held while one chunk is processed and while a transaction commits:
    a commit in the middle of a chunk (at its report's send) would put the chunk's table
    changes in one transaction and its report in the next.
    """

    changelog_sends: ChangelogSends

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event_lock = asyncio.Lock()
        self.on_rebalance_complete.connect(self._release_streams)

    async def _release_streams(self, sender: Any = None, **kwargs: Any) -> None:
        cast(SeekFirstConsumer, self.consumer).allow_release()

    async def _on_partitions_assigned(self, assigned: Any, *args: Any, **kwargs: Any) -> None:
        cast(SeekFirstConsumer, self.consumer).hold_streams()
        await super()._on_partitions_assigned(assigned, *args, **kwargs)

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        self.changelog_sends = ChangelogSends(producer.buffer)
        return producer

    def _new_transport(self) -> Any:
        base = by_url(self.conf.broker_consumer[0])
        transport = type("DriftTransport", (base,), {"TransactionManager": TableWritesFirst,
                                                   "Consumer": SeekFirstConsumer,
                                                   "__module__": __name__})
        return transport(self.conf.broker_consumer, self)


def fresh_state_dir(state: Path) -> IO[str]:
    """Empty the app's RocksDB folder and lock it for this process (the lock file stays open).

    In exactly_once mode faust writes table changes to RocksDB at once, also those of
    transactions Kafka then aborts, and (0.15) never records which changelog offset the
    files hold, so every start reads the whole changelog anyway: over leftover files it
    would keep the aborted changes of keys the changelog lacks. Starting empty costs
    nothing more and leaves exactly the committed state.
    """
    try:
        state.mkdir(parents=True, exist_ok=True)
        lock = (state / ".lock").open("a")
    except OSError as exc:
        raise UserError(f"cannot use the drift state folder {state}: {exc.strerror}",
                        hint="set SOUNDSCAPE_DRIFT__DATA_DIR to a writable folder") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise UserError(f"another drift worker uses {state}",
                        hint="give each worker on a machine its own "
                             "SOUNDSCAPE_DRIFT__DATA_DIR") from None
    for entry in state.iterdir():
        if entry.name != ".lock":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return lock


class DriftStream:
    """The faust app, its topics, tables, agent and timer, built from Settings."""

    def __init__(self, settings: Settings, baseline: BaselineSource | None = None) -> None:
        self.settings = settings
        self.times = TimeWindow.from_settings(settings.intake)
        drift = settings.drift
        partitions = detections_partitions(settings)
        ensure_changelogs(settings, partitions)
        servers = [f"kafka://{s.strip()}" for s in bootstrap_servers(settings).split(",")]
        state = data_dir(settings) / drift.app_id
        self._state_lock = fresh_state_dir(state)
        self.app = DriftApp(
            drift.app_id,
            broker=servers,
            broker_credentials=_credentials(settings),
            store="rocksdb://",
            datadir=str(state),
            processing_guarantee="exactly_once",  # read_committed, transactional output
            topic_partitions=partitions,
            topic_replication_factor=drift.replication_factor,
            consumer_auto_offset_reset="earliest",
            # faust's 60 s default would hold a killed app's partitions for a minute
            broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
            broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_ms / 3000),
            consumer_max_fetch_size=settings.kafka.max_message_bytes,
            web_enabled=False,
            TableManager=MarkerAwareTableManager,
        )
        # restoring a table stops at its changelog's last committed record (changelog_end)
        self.app.changelog_probe_config = common_config(settings) | {
            "group.id": f"{drift.app_id}-changelog-probe"}
        self.detections = self.app.topic(settings.topics.detections, key_serializer="raw",
                                         value_serializer="raw")
        self.drift_topic = self.app.topic(settings.topics.drift, key_serializer="raw",
                                          value_serializer="raw")
        self.stations = self.app.Table(STATIONS_TABLE, default=None, partitions=partitions,
                                       help="drift state of each station (StationMeta)")
        self.panes = self.app.Table(PANES_TABLE, default=None, partitions=partitions,
                                    help="summaries of each station's panes")
        self.baseline = baseline
        self.ready = False
        self.agent_crashed: str | None = None
        self.processed = 0
        self.event_time = 0  # ns: newest chunk end processed
        self.reported = 0
        self.reported_silences: set[tuple[str, int]] = set()
        self.last_offsets: dict[int, int] = {}  # partition -> offset last processed
        self.last_event_at: dict[int, float] = {}  # partition -> monotonic time of it
        self._producer: Producer | None = None
        self.app.agent(self.detections, name="drift-checks")(self._process)
        self.app.timer(drift.silence_check_interval_s, name="silent-stations")(
            self._find_silent)
        self.app.task(self._on_started)

    def station(self, station_id: str) -> StationDrift:
        data = self.stations.get(station_id)
        meta = StationMeta.from_json(data) if data is not None else StationMeta(station_id)
        return StationDrift(meta, TablePaneStore(self.panes, station_id), self.settings.drift,
                            self.baseline)

    async def _on_started(self) -> None:
        self.ready = True
        log.info("drift checks started", app_id=self.settings.drift.app_id,
                 detections=self.settings.topics.detections, drift=self.settings.topics.drift)

    async def _process(self, stream: Any) -> None:
        try:
            async for event in stream.events():
                async with self.app.event_lock:
                    await self._process_one(event)
                self.agent_crashed = None
        except Exception as exc:
            # faust restarts the agent; until it processes again, health says so (under
            # systemd the watchdog then restarts the service).
            self.agent_crashed = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise

    async def _process_one(self, event: Any) -> None:
        partition = event.message.partition
        try:
            message = parse(Detection, event.value)
            problem = self.times.problem("chunk_start", message.chunk_start)
            if problem is not None:  # would push event time to 2262 and close every window
                raise MessageError(f"{IMPLAUSIBLE_TIME}: {problem}")
        except MessageError as exc:
            metrics.CHUNKS.labels("invalid").inc()
            log.warning("detection skipped (the sink dead-letters it)", error=str(exc),
                        partition=partition, offset=event.message.offset)
            return
        drift = self.station(message.station_id)
        try:
            result = drift.ingest(Observation.from_detection(message))
        except FaustError:
            raise  # tables and changelogs (e.g. not yet created): faust's to retry, not a bad result
        except Exception as exc:  # noqa: BLE001 - one result never stops the checks
            metrics.CHUNKS.labels("invalid").inc()
            log.error("detection skipped: the drift checks failed on it", partition=partition,
                      offset=event.message.offset, error=f"{type(exc).__name__}: {exc}")
            return
        drift.meta.partition = partition
        self.last_offsets[partition] = event.message.offset
        self.last_event_at[partition] = time.monotonic()
        self.stations[message.station_id] = drift.meta.to_json()
        metrics.CHUNKS.labels(result.outcome).inc()
        self.event_time = max(self.event_time, drift.meta.watermark)
        metrics.EVENT_TIME.set(self.event_time / NS)
        self.processed += 1
        for report in result.reports:
            await self._send(report, partition)
            self._count(report)

    async def _send(self, report: DriftReport, partition: int) -> None:
        """Send a report in the transaction of the chunk that closed its window.

        (faust's `Topic.send` picks a transaction by the drift topic's partition, which
        here has none: the report would go out at once, outside any transaction, and a
        restart after an aborted transaction would publish it again.)
        """
        group = self.app.assignor.group_for_topic(self.settings.topics.detections)
        await self.app.producer.send(
            self.settings.topics.drift, report.station_id.encode(), report.to_bytes(),
            None, None, None, transactional_id=f"{self.app.conf.id}-{group}-{partition}")

    def _count(self, report: DriftReport) -> None:
        self.reported += 1
        metrics.REPORTS.labels(report.check, str(report.alert).lower()).inc()
        if report.alert:
            log.warning("drift alert", station=report.station_id, check=report.check,
                        value=report.value, threshold=report.threshold,
                        window_start=iso(report.window_start), detail=report.detail)

    async def _find_silent(self) -> None:
        """Report stations silent for `silent_after_s`: live ones by the wall clock,
        replayed ones by the newest chunk end among this worker's replayed stations.

        Only stations whose partition is caught up count: during a backlog a station's
        chunks may simply not have been read yet.
        """
        metas = [StationMeta.from_json(v) for _, v in list(self.stations.items()) if v]
        replay_clock = max((m.watermark for m in metas if m.source == "replay"), default=0)
        caught_up = await self._caught_up_partitions()
        reports = []
        for meta in metas:
            if meta.partition not in caught_up:
                continue
            if (meta.station_id, meta.watermark) in self.reported_silences:
                continue
            now = time.time_ns() if meta.source == "live" else replay_clock
            found = StationDrift(meta, NoPanes(), self.settings.drift, self.baseline)
            for report in found.silence_reports(now):
                reports.append(report)
                self.reported_silences.add((meta.station_id, meta.watermark))
        if reports:
            await asyncio.get_running_loop().run_in_executor(None, self._publish, reports)

    async def _caught_up_partitions(self) -> set[int]:
        """Assigned detections partitions with nothing committed left to process: the
        consumer has fetched up to the last stable offset, and the agent has processed
        the last record (or nothing arrived for a few seconds: an aborted tail)."""
        consumer = self.app.consumer
        topic = self.settings.topics.detections
        mine = [tp for tp in consumer.assignment() if tp.topic == topic]
        if not mine:
            return set()
        ends = await consumer.highwaters(*mine)  # last stable offsets (read_committed)
        idle = time.monotonic() - IDLE_S
        done = set()
        for tp in mine:
            end, position = ends.get(tp), await consumer.position(tp)
            if end is None or position is None or position < end:
                continue
            last = self.last_offsets.get(tp.partition)
            if last is None or last + 2 >= end or self.last_event_at[tp.partition] < idle:
                done.add(tp.partition)
        return done

    def _publish(self, reports: list[DriftReport]) -> None:
        if self._producer is None:
            self._producer = Producer(producer_config(self.settings))
        publish(self.settings, self.settings.topics.drift, reports, self._producer, 30)
        for report in reports:
            self._count(report)

    def health(self) -> dict[str, Any]:
        try:  # partitions held: a restarted app has its work back once it has some
            partitions: int | None = len(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - no consumer yet
            partitions = None
        return {"healthy": self.ready and self.agent_crashed is None, "partitions": partitions,
                "processed": self.processed, "reports": self.reported,
                "event_time": iso(self.event_time) if self.event_time else None,
                "agent_crashed": self.agent_crashed}


class DriftWorker(faust.Worker):
    """faust's worker, with a deadline on stopping.

    faust 0.15 can hang while stopping in exactly_once mode after its last commit fails
    ("Not in the middle of a transaction"), and after a start that failed (mode's
    consumer thread: "got Future attached to a different loop", once in a chaos run,
    after which the process hung for two minutes instead of leaving to be restarted).
    Nothing is lost by leaving then: Kafka aborts the open transaction (reports, table
    changes and offsets together), and the next worker redoes that work. So a stop that
    takes longer than STOP_TIMEOUT_S ends the process: with status 0 after a requested
    stop, 1 after a failure.
    """

    _deadline_set = False

    def _schedule_shutdown(self, signal: Any) -> None:
        self._stop_deadline(status=0)
        super()._schedule_shutdown(signal)

    def on_worker_shutdown(self) -> None:
        """faust's worker is leaving: after a stop, or (with an exception in flight) after
        a failure."""
        self._stop_deadline(status=1 if sys.exc_info()[0] is not None else 0)
        super().on_worker_shutdown()

    def _stop_deadline(self, status: int) -> None:
        if not self._deadline_set:
            self._deadline_set = True
            threading.Thread(target=_exit_after, args=(STOP_TIMEOUT_S, status),
                             name="stop-deadline", daemon=True).start()


def _exit_after(seconds: float, status: int) -> None:
    time.sleep(seconds)
    log.warning("drift checks did not stop in time; leaving (Kafka aborts the open "
                "transaction, the next worker redoes it)", seconds=seconds, status=status)
    logging.shutdown()
    os._exit(status)


def run(settings: Settings, baseline: BaselineSource | None = None) -> None:
    """Run the app in this process until SIGTERM / Ctrl-C."""
    stream = DriftStream(settings, baseline)
    quiet = settings.log_level != "debug"
    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.DEBUG)
    # "producer buffer full" is faust's normal state while it catches up on a backlog.
    logging.getLogger("faust.transport.producer").setLevel(logging.ERROR if quiet else logging.DEBUG)
    worker = DriftWorker(stream.app, quiet=True, override_logging=False,
                          redirect_stdouts=False, loglevel=settings.log_level)
    worker.spinner = None  # a terminal spinner has no place in a service's log

    def execute() -> None:
        try:
            worker.execute_from_commandline()
        finally:
            stream.ready = False

    # faust's worker owns SIGTERM/SIGINT (DriftWorker._schedule_shutdown bounds the stop).
    service = EventService("drift", lambda _stop: execute(), stream.health)
    run_service(service, metrics_host=settings.metrics_host, metrics_port=settings.metrics_port,
                handles_signals=True)
