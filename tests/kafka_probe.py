"""Probing what a Kafka client may do: one message's delivery error, for security tests."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, Producer


def produce_error(config: dict[str, Any], topic: str,
                  timeout_s: float = 15) -> KafkaError | None:
    """The delivery error of one message (None: delivered); errors seen by error_cb
    (authentication) count as the error when no delivery report came."""
    seen: list[Any] = []
    producer = Producer(config | {"message.timeout.ms": int(timeout_s * 1000),
                                  "error_cb": seen.append, "enable.idempotence": True})
    reports: list[KafkaError | None] = []
    producer.produce(topic, b"probe", key=b"probe", on_delivery=lambda e, _m: reports.append(e))
    deadline = time.monotonic() + timeout_s + 5
    while not reports and not seen and time.monotonic() < deadline:
        producer.poll(0.1)
    if reports and reports[0] is not None:
        return reports[0]
    if reports:
        return None
    return seen[0] if seen else KafkaError(KafkaError._MSG_TIMED_OUT)
