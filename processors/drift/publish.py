"""Publish result messages (reports, detections) keyed by station, and wait for Kafka."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer

from soundscape.errors import ServiceError
from soundscape.kafka_clients import producer_config
from soundscape.messages import Detection, DriftReport
from soundscape.settings import Settings


def publish(settings: Settings, topic: str, messages: Iterable[Detection | DriftReport],
            producer: Producer | None = None, timeout_s: float = 60) -> int:
    """Produce every message (idempotent, acks=all) and flush; returns how many."""
    producer = producer or Producer(producer_config(settings))
    count = 0
    for message in messages:
        producer.produce(topic, key=message.station_id.encode(), value=message.to_bytes())
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    if producer.flush(timeout_s):
        raise ServiceError(f"messages to {topic} not acknowledged by Kafka within "
                           f"{timeout_s:.0f} s", hint="is the broker up? `soundscape infra status`")
    return count
