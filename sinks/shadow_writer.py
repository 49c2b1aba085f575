"""The shadow writer: results of candidate bundles, stored apart in `shadow_results`.

    soundscape.detections.shadow.v1 (read committed) -> parse and check -> INSERT ..
    ON CONFLICT DO NOTHING -> commit offsets

A candidate scored by `soundscape worker --shadow VERSION` must never change what
dashboards, alerts and drift checks read, so its results have a topic and a table of
their own, keyed by (chunk, version): a redelivered or replayed batch stores nothing
twice, and offsets are committed only after the rows are in. Results naming a version
that is not registered, or a chunk id that is not the chunk's, are refused (counted
and logged), like the live sink refuses them. While the database is down, the batch is
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

from soundscape.counters import Counters
from soundscape.kafka_clients import consumer_config, next_offsets, without_errors
from soundscape.logs import get_logger
from soundscape.messages import Detection, MessageError, parse
from soundscape.settings import Settings
from soundscape.sinks.bundle_registry import registered_among
from soundscape.sinks.connection import connect
from soundscape.sinks.service import check_identity

log = get_logger(__name__)

STORED = Counter("soundscape_shadow_results_total", "Shadow results handled", ["outcome"])

_INSERT = (
    "INSERT INTO shadow_results (chunk_id, bundle_version, station_id, chunk_start, top_label, "
    "confidence, detected, top_k, inference_ms, worker_id, scored_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (chunk_id, bundle_version) DO NOTHING")


@dataclass
class ShadowStats(Counters):
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: int = 0
    unregistered: int = 0
    batches: int = 0
    database_retries: int = 0


@dataclass
class ShadowWriter:
    """A service for soundscape.service_runner: run() until request_stop()."""

    settings: Settings
    name: str = "shadow-sink"
    stats: ShadowStats = field(default_factory=ShadowStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _database_up: bool = True
    _conn: psycopg.Connection[Any] | None = None

    @property
    def group_id(self) -> str:
        return f"{self.settings.sink.group_id}-shadow"

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": self._database_up, "database": "up" if self._database_up else "down",
                **self.stats.as_dict()}

    def run(self) -> ShadowStats:
        sink, topic = self.settings.sink, self.settings.topics.shadow_detections
        consumer = Consumer(consumer_config(self.settings, self.group_id))
        consumer.subscribe([topic])
        log.info("shadow writer started", topic=topic, group=self.group_id)
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
            log.info("shadow writer stopped", **self.stats.as_dict())
        return self.stats

    def _handle(self, messages: list[Message]) -> bool:
        """Store the batch; False when stopped before it was stored."""
        results: list[Detection] = []
        for msg in without_errors(messages):
            self.stats.consumed += 1
            try:
                detection = parse(Detection, msg.value())
                check_identity(detection)
            except MessageError as exc:
                self.stats.malformed += 1
                STORED.labels("malformed").inc()
                log.warning("shadow result refused", error=str(exc)[:200],
                            source=f"{msg.topic()}/{msg.partition()}/{msg.offset()}")
                continue
            results.append(detection)
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

    def _store(self, conn: psycopg.Connection[Any], results: list[Detection]) -> None:
        registered = registered_among(conn, {r.bundle_version for r in results})
        rows = []
        for r in results:
            if r.bundle_version not in registered:
                self.stats.unregistered += 1
                STORED.labels("unregistered").inc()
                log.warning("shadow result of an unregistered bundle refused",
                            version=r.bundle_version[:200], chunk_id=str(r.chunk_id))
                continue
            rows.append((r.chunk_id, r.bundle_version, r.station_id,
                         datetime.fromtimestamp(r.chunk_start / 1e9, UTC), r.top.label,
                         r.top.probability,
                         Jsonb({d.label: round(d.probability, 6) for d in r.detections}),
                         Jsonb([[t.label, round(t.probability, 6)] for t in r.top_k]),
                         r.timing.inference_ms, r.worker_id,
                         datetime.fromtimestamp(r.timing.scored_at / 1e9, UTC)))
        stored = 0
        with conn.cursor() as cur:
            for row in rows:  # a shadow batch is a worker batch or a few: no COPY needed
                cur.execute(_INSERT, row)
                stored += cur.rowcount
        self.stats.stored += stored
        self.stats.duplicates += len(rows) - stored
        STORED.labels("stored").inc(stored)
        STORED.labels("duplicate").inc(len(rows) - stored)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="soundscape-shadow-sink")
        return self._conn

