"""After a chaos run: what was expected, what the topics and the database hold.

Every count comes from the real stores, read afresh: the detections topic (read
committed, from its first offset to its end) for results produced more than once, the
`chunks` table for what is stored, the audio dead-letter topic with its reasons, the audio
topic for the order the offline station's spool drained in, and `drift_reports` against
the windows the batch checks find in the stored chunks.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope, chunk_id_for
from soundscape.kafka_clients import consumer_config
from soundscape.messages import Detection, MessageError, parse
from soundscape.settings import Settings

CHUNK_NS = 10 * 10**9
#: A group coordinator loading or moving (a broker just back): ask again.
_COORDINATOR_MOVING = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR)


@dataclass(frozen=True)
class Expected:
    """The chunks the stations record: station -> (first chunk start, count)."""

    t0_ns: int
    per_station: dict[str, int]

    def ids(self) -> dict[str, tuple[str, int]]:
        return {str(chunk_id_for(station, self.t0_ns + k * CHUNK_NS)): (station,
                                                                         self.t0_ns + k * CHUNK_NS)
                for station, count in self.per_station.items() for k in range(count)}

    @property
    def total(self) -> int:
        return sum(self.per_station.values())

    def last_end(self) -> dict[str, int]:
        return {s: self.t0_ns + n * CHUNK_NS for s, n in self.per_station.items()}


def read_topic(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[Message]:
    """Every committed message of `topic`, from its first offset to its current end."""
    consumer = Consumer(consumer_config(settings, f"chaos-audit-{time.time_ns()}",
                                        **{"enable.partition.eof": True}))
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        found: list[Message] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                error = msg.error()
                if error is None:
                    found.append(msg)
                    if msg.offset() + 1 >= ends[msg.partition()]:
                        done.add(msg.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
        return found
    finally:
        consumer.close()


def stored_ids(settings: Settings, ids: list[str]) -> set[str]:
    with psycopg.connect(database_url(settings), connect_timeout=10) as conn:
        rows = conn.execute("SELECT chunk_id::text FROM chunks WHERE chunk_id = ANY(%s::uuid[])",
                            (ids,)).fetchall()
    return {row[0] for row in rows}


def result_counts(settings: Settings, expected: Expected) -> dict[str, Any]:
    ids = expected.ids()
    results: Counter[str] = Counter()
    malformed = 0
    for msg in read_topic(settings, settings.topics.detections):
        try:
            results[str(parse(Detection, msg.value()).chunk_id)] += 1
        except MessageError:
            malformed += 1
    with psycopg.connect(database_url(settings), connect_timeout=10) as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT chunk_id) FROM chunks").fetchone() or (0, 0)
        detection_rows, detection_keys = conn.execute(
            "SELECT count(*), count(DISTINCT (chunk_id, label)) FROM detections").fetchone() or (0, 0)
    stored = stored_ids(settings, list(ids))
    missing = sorted(set(ids) - stored)
    return {
        "chunks_expected": expected.total,
        "stored": len(stored),
        "missing": len(missing),
        "missing_examples": [{"chunk_id": cid, "station": ids[cid][0],
                              "chunk_start": _iso(ids[cid][1])} for cid in missing[:5]],
        "duplicated": sum(n - 1 for n in results.values() if n > 1) + (rows - distinct)
        + (detection_rows - detection_keys),
        "duplicated_results_in_topic": sum(n - 1 for n in results.values() if n > 1),
        "duplicated_rows": (rows - distinct) + (detection_rows - detection_keys),
        "results_in_topic": sum(results.values()),
        "unexpected_results": len(set(results) - set(ids)),
        "malformed_results": malformed,
    }


def dead_letters(settings: Settings) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for msg in read_topic(settings, settings.topics.audio_dlq):
        headers = dict(msg.headers() or [])
        reason = headers.get("dlq_reason") or b"unknown"
        reasons[reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)] += 1
    return {"count": sum(reasons.values()), "reasons": dict(reasons)}


def spool_order(settings: Settings, station: str) -> dict[str, Any]:
    """The station's chunks as the audio topic holds them: each once, in recording order."""
    starts = []
    for msg in sorted(read_topic(settings, settings.topics.audio),
                      key=lambda m: (m.partition(), m.offset())):
        if msg.key() != station.encode():
            continue
        starts.append(ChunkEnvelope.from_headers(msg.headers()).chunk_start)
    in_order = all(b > a for a, b in zip(starts, starts[1:], strict=False))
    abutting = all(b - a == CHUNK_NS for a, b in zip(starts, starts[1:], strict=False))
    return {"chunks_in_topic": len(starts), "in_order": in_order, "abutting": abutting,
            "duplicated": len(starts) - len(set(starts))}


Window = tuple[str, int]  # (station, window start in ns)


def expected_drift_windows(settings: Settings, expected: Expected) -> set[Window]:
    """Windows the streaming checks should report: those the batch checks find in the
    stored chunks and that a station's own chunks closed."""
    from soundscape.processors.drift import batch

    size, grace = settings.drift.window_s * 10**9, settings.drift.grace_s * 10**9
    last_end = expected.last_end()
    since = datetime.fromtimestamp(expected.t0_ns / 1e9, UTC)
    until = datetime.fromtimestamp(max(last_end.values()) / 1e9, UTC)
    return {(r.station_id, r.window_start) for r in batch.check(settings, since, until)
            if r.check != "silent" and r.window_start + size + grace <= last_end[r.station_id]}


def stored_drift_windows(settings: Settings, expected: Expected) -> set[Window]:
    with psycopg.connect(database_url(settings), connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT DISTINCT station_id, window_start FROM drift_reports "
            "WHERE check_name <> 'silent' AND station_id = ANY(%s)",
            (list(expected.per_station),)).fetchall()
    return {(station, int(start.timestamp()) * 10**9) for station, start in rows}


def drift_windows(settings: Settings, expected: Expected,
                  wanted: set[Window] | None = None) -> dict[str, Any]:
    """Expected windows (`wanted`, computed if not given) against those stored."""
    if wanted is None:
        wanted = expected_drift_windows(settings, expected)
    stored = stored_drift_windows(settings, expected)
    return {"expected": len(wanted), "stored": len(stored & wanted),
            "missing": len(wanted - stored), "extra": len(stored - wanted)}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def reader_positions(settings: Settings, groups: list[str]) -> dict[str, Any]:
    """Where the readers of the detections topic stand, per partition: the log end (high
    watermark), the last stable offset (the end a read_committed reader may reach; below
    the log end while a transaction is open) and each group's committed offset.

    Taken when the pipeline stops draining, it tells the two kinds of stall apart: a
    last stable offset held below the log end by a transaction nobody ends (the readers
    are at it and wait), or readers behind a last stable offset that moves (the consumers
    themselves are stuck).
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel
    from confluent_kafka.admin import AdminClient, OffsetSpec

    from soundscape.kafka_clients import admin_config

    topic = settings.topics.detections
    admin = AdminClient(admin_config(settings))
    partitions = sorted(admin.list_topics(topic, timeout=15).topics[topic].partitions)
    tps = [TopicPartition(topic, p) for p in partitions]

    def ends(level: Any) -> dict[int, int]:
        futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                     isolation_level=level, request_timeout=15)
        return {tp.partition: future.result().offset for tp, future in futures.items()}

    log_end, stable = ends(IsolationLevel.READ_UNCOMMITTED), ends(IsolationLevel.READ_COMMITTED)
    committed: dict[str, dict[int, int]] = {}
    for group in groups:
        request = [ConsumerGroupTopicPartitions(group, list(tps))]
        for attempt in range(20):  # a coordinator loading (a broker just back) says retry
            try:
                future, = admin.list_consumer_group_offsets(request, request_timeout=15).values()
                found = future.result().topic_partitions
                break
            except KafkaException as exc:
                error = exc.args[0]
                if attempt == 19 or not (error.retriable() or error.code() in _COORDINATOR_MOVING):
                    raise
                time.sleep(0.5)
        committed[group] = {tp.partition: tp.offset for tp in found}
    rows = []
    for p in partitions:
        row: dict[str, Any] = {"partition": p, "log_end": log_end[p], "last_stable": stable[p]}
        row |= {f"committed:{group}": committed.get(group, {}).get(p) for group in groups}
        rows.append(row)
    held = [r["partition"] for r in rows if r["last_stable"] < r["log_end"]]
    behind = {g: [r["partition"] for r in rows
                  if r[f"committed:{g}"] is not None and r[f"committed:{g}"] >= 0
                  and r[f"committed:{g}"] < r["last_stable"]] for g in groups}
    return {"partitions": rows, "open_transaction_partitions": held, "behind_by_group": behind}
