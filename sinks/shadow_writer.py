"""Results stored apart from the live tables: candidates' (`shadow_results`) and the
stations' own (`edge_results`). One writer, told which by a small `Apart` record.

    <its topic> (read committed) -> parse and check -> INSERT .. ON CONFLICT DO NOTHING
    -> commit offsets

A candidate scored by `soundscape worker --shadow VERSION` must never change what
dashboards, alerts and drift checks read, and neither may a station's own result of a
chunk (`station.edge_bundle`), which a worker may also score with another bundle; so
each has a topic and a table of its own, keyed by (chunk, version): a redelivered or
replayed batch stores nothing twice, and offsets are committed only after the rows are
in. Results naming a version that is not registered, or a chunk id that is not the
chunk's, are refused (counted and logged), like the live sink refuses them. Edge
results are also refused when they are not marked as their station's (`worker_id`
`edge:<station_id>`) or their signature fails the rules chunks follow
(`intake.signatures`: a station with a registered key must have signed with it;
`require`: every result must be signed). While the database is down, the batch is
retried with backoff and nothing is committed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message
from prometheus_client import Counter
from psycopg.types.json import Jsonb

from soundscape.chunk_signing import SIGNER_HEADER, verify_result
from soundscape.counters import Counters
from soundscape.detection_message import edge_worker_id
from soundscape.kafka_clients import consumer_config, next_offsets, without_errors
from soundscape.logs import get_logger
from soundscape.messages import Detection, MessageError, parse
from soundscape.settings import Settings
from soundscape.sinks.bundle_registry import registered_among
from soundscape.sinks.connection import connect
from soundscape.sinks.service import check_identity
from soundscape.sinks.signing_keys import DatabaseSigningKeys

log = get_logger(__name__)

_COLUMNS = ("chunk_id", "bundle_version", "station_id", "chunk_start", "top_label", "confidence",
            "detected", "top_k", "inference_ms", "worker_id", "scored_at")


@dataclass(frozen=True)
class Apart:
    """Which results a writer keeps apart: its name (service, consumer group suffix),
    topic (a field of `topics`), table, metric, and whether results must be their
    station's own (edge results: origin and signature checked, signer and capture time
    stored)."""

    name: str
    topic_field: str
    table: str
    counter: Counter
    edge: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return (*_COLUMNS, "signer", "captured_at") if self.edge else _COLUMNS

    def insert(self) -> str:
        return (f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join(['%s'] * len(self.columns))}) "
                "ON CONFLICT (chunk_id, bundle_version) DO NOTHING")


SHADOW = Apart("shadow", "shadow_detections", "shadow_results",
               Counter("soundscape_shadow_results_total", "Shadow results handled", ["outcome"]))
EDGE = Apart("edge", "edge_detections", "edge_results",
             Counter("soundscape_edge_results_total", "Edge results (scored on stations) handled",
                     ["outcome"]), edge=True)


@dataclass
class ApartStats(Counters):
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: int = 0
    unregistered: int = 0
    refused: int = 0  # edge results: not the station's own, or a signature that fails
    batches: int = 0
    database_retries: int = 0


ShadowStats = ApartStats


@dataclass
class _Checked:
    detection: Detection
    signer: str | None = None


@dataclass
class ApartWriter:
    """A service for soundscape.service_runner: run() until request_stop()."""

    settings: Settings
    kind: Apart
    stats: ApartStats = field(default_factory=ApartStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _database_up: bool = True
    _conn: psycopg.Connection[Any] | None = None
    _keys: DatabaseSigningKeys | None = None

    @property
    def name(self) -> str:
        return f"{self.kind.name}-sink"

    @property
    def group_id(self) -> str:
        return f"{self.settings.sink.group_id}-{self.kind.name}"

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": self._database_up, "database": "up" if self._database_up else "down",
                **self.stats.as_dict()}

    def run(self) -> ApartStats:
        sink, topic = self.settings.sink, getattr(self.settings.topics, self.kind.topic_field)
        if self.kind.edge and self.settings.intake.signatures != "off":
            # the keys are read before anything is consumed: without them every forged
            # result would pass (a database that cannot be read stops the writer here)
            self._keys = DatabaseSigningKeys(self.settings, self.settings.intake.keys_ttl_s)
        consumer = Consumer(consumer_config(self.settings, self.group_id))
        consumer.subscribe([topic])
        log.info(f"{self.kind.name} writer started", topic=topic, group=self.group_id,
                 table=self.kind.table)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(sink.batch_size, sink.batch_timeout_ms / 1000)
                if messages and self._handle(messages):
                    consumer.commit(offsets=next_offsets(messages), asynchronous=False)
                    self.stats.batches += 1
        finally:
            consumer.close()
            if self._conn is not None:
                self._conn.close()
            log.info(f"{self.kind.name} writer stopped", **self.stats.as_dict())
        return self.stats

    def _handle(self, messages: list[Message]) -> bool:
        """Store the batch; False when stopped before it was stored."""
        results: list[_Checked] = []
        for msg in without_errors(messages):
            self.stats.consumed += 1
            source = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
            try:
                detection = parse(Detection, msg.value())
                check_identity(detection)
            except MessageError as exc:
                self.stats.malformed += 1
                self.kind.counter.labels("malformed").inc()
                log.warning(f"{self.kind.name} result refused", error=str(exc)[:200],
                            source=source)
                continue
            checked = _Checked(detection)
            if self.kind.edge:
                refusal = self._edge_refusal(msg, detection)
                if refusal is not None:
                    self.stats.refused += 1
                    self.kind.counter.labels(refusal[0]).inc()
                    log.warning("edge result refused", reason=refusal[0], detail=refusal[1],
                                station=detection.station_id, chunk_id=str(detection.chunk_id),
                                source=source)
                    continue
                signer = dict(msg.headers() or []).get(SIGNER_HEADER)
                if signer is not None and self._keys is not None:  # verified: recorded
                    checked.signer = signer.decode()
            results.append(checked)
        delay = 0.25
        while not self._stop.is_set():
            try:
                conn = self._connection()
                with conn.transaction():
                    self._store(conn, results)
                self._database_up = True
                return True
            except psycopg.OperationalError as exc:
                self._database_up = False
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self.stats.database_retries += 1
                log.warning("database unavailable; batch kept for retry",
                            error=str(exc).strip()[:200], retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def _edge_refusal(self, msg: Message, detection: Detection) -> tuple[str, str] | None:
        """(reason, detail) when an edge result is not its station's own, else None."""
        if detection.worker_id != edge_worker_id(detection.station_id):
            return ("wrong_origin", f"worker_id {detection.worker_id[:100]!r} is not "
                                    f"{edge_worker_id(detection.station_id)!r}")
        if self._keys is None:
            return None
        return verify_result(msg.headers(), msg.value(), detection.station_id,
                             self._keys.lookup, self.settings.intake.signatures == "require")

    def _store(self, conn: psycopg.Connection[Any], results: list[_Checked]) -> None:
        registered = registered_among(conn, {c.detection.bundle_version for c in results})
        rows = []
        for checked in results:
            r = checked.detection
            if r.bundle_version not in registered:
                self.stats.unregistered += 1
                self.kind.counter.labels("unregistered").inc()
                log.warning(f"{self.kind.name} result of an unregistered bundle refused",
                            version=r.bundle_version[:200], chunk_id=str(r.chunk_id))
                continue
            row = (r.chunk_id, r.bundle_version, r.station_id, _time(r.chunk_start), r.top.label,
                   r.top.probability,
                   Jsonb({d.label: round(d.probability, 6) for d in r.detections}),
                   Jsonb([[t.label, round(t.probability, 6)] for t in r.top_k]),
                   r.timing.inference_ms, r.worker_id, _time(r.timing.scored_at))
            if self.kind.edge:
                row += (checked.signer, _time(r.timing.captured_at))
            rows.append(row)
        stored = 0
        with conn.cursor() as cur:
            for row in rows:  # a batch of these is small: no COPY needed
                cur.execute(self.kind.insert(), row)
                stored += cur.rowcount
        self.stats.stored += stored
        self.stats.duplicates += len(rows) - stored
        self.kind.counter.labels("stored").inc(stored)
        self.kind.counter.labels("duplicate").inc(len(rows) - stored)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings,
                                 application_name=f"soundscape-{self.kind.name}-sink")
        return self._conn


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


@dataclass
class ShadowWriter(ApartWriter):
    """`sink --shadow`: candidates' results (`worker --shadow VERSION`) in shadow_results."""

    kind: Apart = SHADOW


@dataclass
class EdgeWriter(ApartWriter):
    """`sink --edge`: results stations scored themselves in edge_results."""

    kind: Apart = EDGE
