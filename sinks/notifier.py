"""The notifier: detections and drift alerts from Kafka, and silent stations from the
database, sent to MQTT and Apprise targets by the rules of `notify.rules`.

    consume (read committed) -> events (rules) -> claim in `notifications` -> send ->
    mark sent -> commit offsets

- Each event's id names what happened (rule, station, species, chunk), so redelivered
  or replayed results give ids already in the table and nothing is sent twice.
- An event is claimed (a row) before it is sent and marked `sent_at` after; offsets are
  committed only when every event of the batch went out. After a crash (kill -9 at any
  moment) the batch comes again: sent events are skipped, claimed-but-unsent ones are
  sent. A send that fails is retried with backoff, nothing committed meanwhile: delivered
  at least once, and twice only if the process dies between a target's acknowledgement
  and the UPDATE that records it.
- De-duplication (per rule, station and species within `cooldown_minutes`) and rate
  limits (`max_per_hour`) count by event time and start from what the table recorded.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message
from prometheus_client import Counter, Gauge

from soundscape.counters import Counters
from soundscape.kafka_clients import consumer_config, next_offsets, without_errors
from soundscape.logs import get_logger
from soundscape.messages import Detection, DriftReport, MessageError, parse
from soundscape.settings import Settings
from soundscape.sinks.connection import connect
from soundscape.sinks.notify_rules import (
    NS,
    Event,
    Limiter,
    detection_events,
    drift_events,
    silent_events,
)
from soundscape.sinks.notify_targets import DeliveryError, Targets, describe

log = get_logger(__name__)

EVENTS = Counter("soundscape_notify_events_total",
                 "Events the notifier finished with, by outcome (sent, duplicate, cooldown, "
                 "rate_limit)", ["outcome"])
FAILURES = Counter("soundscape_notify_delivery_failures_total", "Failed sends (retried)")
DATABASE_UP = Gauge("soundscape_notify_database_up", "1 when the last database operation worked")


@dataclass
class NotifyStats(Counters):
    consumed: int = 0
    events: int = 0
    sent: int = 0
    duplicates: int = 0
    cooldown: int = 0
    rate_limited: int = 0
    failures: int = 0
    committed: int = 0


@dataclass
class Notifier:
    """A service for soundscape.service_runner: run() until request_stop()."""

    settings: Settings
    name: str = "notify"
    stats: NotifyStats = field(default_factory=NotifyStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _healthy: bool = True
    _conn: psycopg.Connection[Any] | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": self._healthy, "rules": len(self.settings.notify.rules),
                **self.stats.as_dict()}

    def run(self) -> NotifyStats:
        notify, topics = self.settings.notify, self.settings.topics
        rules = {rule.name: rule for rule in notify.rules}
        targets = Targets(notify, client_id=f"soundscape-notify-{notify.group_id}")
        limiter = self._seeded_limiter(rules)
        # A killed notifier's partitions go to its successor after 10 s, not librdkafka's 45.
        consumer = Consumer(consumer_config(self.settings, notify.group_id,
                                            **{"session.timeout.ms": 10_000,
                                               "heartbeat.interval.ms": 3_000}))
        consumer.subscribe([topics.detections, topics.drift])
        log.info("notifier started", rules=[
            {"name": r.name, "kind": r.kind, "targets": describe(r.targets)} for r in rules.values()])
        next_silence_check = 0.0
        try:
            while not self._stop.is_set():
                messages = consumer.consume(200, 0.5)
                events = self._events(messages, list(rules.values()))
                if time.monotonic() >= next_silence_check:
                    events += self._silences(list(rules.values()))
                    next_silence_check = time.monotonic() + notify.silent_check_s
                if events and not self._deliver(events, rules, limiter, targets):
                    break  # stopped while retrying: nothing committed, redone next start
                if messages:
                    offsets = next_offsets(messages)
                    if offsets:
                        consumer.commit(offsets=offsets, asynchronous=False)
                    self.stats.committed += len(messages)
        finally:
            consumer.close()
            targets.close()
            if self._conn is not None:
                self._conn.close()
            log.info("notifier stopped", **self.stats.as_dict())
        return self.stats

    # ---- events ----------------------------------------------------------------------------
    def _events(self, messages: list[Message], rules: list[Any]) -> list[Event]:
        events: list[Event] = []
        web_url = self.settings.notify.web_url
        for msg in without_errors(messages):
            self.stats.consumed += 1
            try:
                if msg.topic() == self.settings.topics.drift:
                    events += drift_events(rules, parse(DriftReport, msg.value()))
                else:
                    events += detection_events(rules, parse(Detection, msg.value()), web_url)
            except MessageError:
                continue  # the sink dead-letters it
        return events

    def _silences(self, rules: list[Any]) -> list[Event]:
        if not any(rule.kind == "silent" for rule in rules):
            return []
        try:
            rows = self._connection().execute(
                "SELECT station_id, last_seen FROM stations WHERE last_seen IS NOT NULL"
            ).fetchall()
        except psycopg.Error as exc:
            self._database(False, exc)
            return []
        seen = {station: int(last.timestamp() * NS) for station, last in rows}
        return silent_events(rules, seen, time.time_ns())

    # ---- delivery --------------------------------------------------------------------------
    def _deliver(self, events: list[Event], rules: dict[str, Any], limiter: Limiter,
                 targets: Targets) -> bool:
        for event in sorted(events, key=lambda e: (e.event_ns, e.event_id)):
            self.stats.events += 1
            delay = 1.0
            while True:
                if self._stop.is_set():
                    return False
                try:
                    self._deliver_one(event, rules[event.rule].targets, limiter, targets)
                    break
                except (DeliveryError, psycopg.OperationalError) as exc:
                    self.stats.failures += 1
                    FAILURES.inc()
                    self._healthy = False
                    log.warning("notification not delivered; retrying", event_id=event.event_id,
                                error=str(exc)[:200], retry_in_s=delay)
                    self._forget_connection_if(exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.settings.notify.retry_max_s)
            self._healthy = True
        return True

    def _deliver_one(self, event: Event, names: list[str], limiter: Limiter,
                     targets: Targets) -> None:
        conn = self._connection()
        row = conn.execute("SELECT sent_at FROM notifications WHERE event_id = %s",
                           (event.event_id,)).fetchone()
        if row is not None and row[0] is not None:
            self.stats.duplicates += 1
            EVENTS.labels("duplicate").inc()
            return
        if row is None:
            refused = limiter.allows(event)
            if refused is not None:
                if refused == "cooldown":
                    self.stats.cooldown += 1
                else:
                    self.stats.rate_limited += 1
                EVENTS.labels(refused).inc()
                return
            conn.execute(
                "INSERT INTO notifications (event_id, rule, kind, station_id, species,"
                " dedup_key, event_time, title, targets) VALUES (%s, %s, %s, %s, %s, %s,"
                " %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, event.rule, event.kind, event.station_id, event.species,
                 event.dedup_key, _time(event.event_ns), event.title, names))
            limiter.record(event)  # claimed: counts for de-duplication from now on
        conn.execute("UPDATE notifications SET attempts = attempts + 1 WHERE event_id = %s",
                     (event.event_id,))
        try:
            targets.send(event, names)
        except DeliveryError as exc:
            conn.execute("UPDATE notifications SET last_error = %s WHERE event_id = %s",
                         (str(exc)[:500], event.event_id))
            raise
        conn.execute("UPDATE notifications SET sent_at = now(), last_error = NULL"
                     " WHERE event_id = %s", (event.event_id,))
        self.stats.sent += 1
        EVENTS.labels("sent").inc()
        log.info("notification sent", event_id=event.event_id, targets=describe(names))

    def _seeded_limiter(self, rules: dict[str, Any]) -> Limiter:
        """De-duplication and rate limits as the table left them (a restart forgets none)."""
        limiter = Limiter(rules)
        try:
            rows = self._connection().execute(
                "SELECT rule, dedup_key, event_time FROM notifications"
                " WHERE claimed_at > now() - interval '2 days' ORDER BY event_time").fetchall()
        except psycopg.Error as exc:
            self._database(False, exc)
            return limiter
        for rule, key, when in rows:
            if rule in rules:
                ns = int(when.timestamp() * NS)
                bisect.insort(limiter.sent_by_key.setdefault(key, []), ns)
                bisect.insort(limiter.sent_times.setdefault(rule, []), ns)
        return limiter

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="soundscape-notify")
            self._database(True)
        return self._conn

    def _forget_connection_if(self, exc: Exception) -> None:
        if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
            self._conn.close()
            self._conn = None
            self._database(False, exc)

    def _database(self, up: bool, exc: Exception | None = None) -> None:
        DATABASE_UP.set(1 if up else 0)
        if not up:
            log.warning("database unavailable", error=str(exc)[:200])


def _time(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
