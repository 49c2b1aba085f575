"""Helpers of the sink's integration tests (a unique module name: test folders share
sys.path). Fixtures that use them are in this folder's conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from soundscape.database import database_url
from soundscape.kafka_clients import consumer_config, producer_config
from soundscape.messages import Detection, DriftReport, Heartbeat
from soundscape.settings import Settings
from soundscape.sinks.service import SinkService


def quick_sink(settings: Settings, **sink: Any) -> Settings:
    """Small batches and short waits, so tests see several batches and retries quickly."""
    values = {"batch_size": 50, "batch_timeout_ms": 100, "retry_initial_ms": 100,
              "retry_max_ms": 1000} | sink
    return settings.model_copy(update={"sink": settings.sink.model_copy(update=values)})


class ResultPublisher:
    """Publishes result messages the way workers and stations do (idempotent, acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))

    def raw(self, topic: str, value: bytes | None, key: bytes = b"st") -> None:
        self.producer.produce(topic, value=value, key=key)

    def results(self, messages: Iterable[Detection | Heartbeat | DriftReport]) -> int:
        topics = self.settings.topics
        count = 0
        for m in messages:
            topic = {Detection: topics.detections, Heartbeat: topics.heartbeats,
                     DriftReport: topics.drift}[type(m)]
            self.producer.produce(topic, value=m.to_bytes(), key=m.station_id.encode())
            count += 1
            if count % 1000 == 0:
                self.producer.poll(0)
        self.flush()
        return count

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "messages not acknowledged"


class RunningSink:
    def __init__(self, service: SinkService) -> None:
        self.service = service
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-sink", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            self.error = exc

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.error is not None:
                raise self.error
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.service.health()}"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30) -> None:
        self.service.request_stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the sink did not stop"
        if self.error is not None:
            raise self.error


def scalar(settings: Settings, query: str, *params: Any) -> Any:
    with psycopg.connect(database_url(settings, "writer")) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def column(settings: Settings, query: str, *params: Any) -> list[Any]:
    with psycopg.connect(database_url(settings, "writer")) as conn:
        return [row[0] for row in conn.execute(query, params)]


def table_counts(settings: Settings) -> dict[str, int]:
    tables = ("stations", "models", "chunks", "detections", "station_heartbeats", "drift_reports")
    with psycopg.connect(database_url(settings, "writer")) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def committed_and_end(settings: Settings, group_id: str) -> tuple[int, int]:
    """(sum of the group's committed offsets, sum of end offsets) over the result topics."""
    consumer = Consumer(consumer_config(settings, group_id))
    try:
        partitions = []
        for topic in (settings.topics.detections, settings.topics.heartbeats, settings.topics.drift):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p) for p in meta.partitions]
        committed = consumer.committed(partitions, timeout=10)
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in committed), sum(ends)
