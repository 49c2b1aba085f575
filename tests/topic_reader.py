"""Reading a topic back in integration tests: every committed message from the start."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Message

from soundscape.kafka_clients import consumer_config
from soundscape.settings import Settings


def read_messages(settings: Settings, topic: str, expected: int = 0, settle_s: float = 3.0,
                  timeout_s: float = 120.0) -> list[Message]:
    """Read (read_committed, a fresh group) until at least `expected` messages arrived and
    none came for `settle_s`, so duplicates past `expected` would show up too."""
    consumer = Consumer(consumer_config(settings, f"reader-{time.time_ns()}"))
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
            messages += batch
            if batch:
                idle_since = time.monotonic()
            if len(messages) >= expected and time.monotonic() - idle_since > settle_s:
                break
    finally:
        consumer.close()
    return messages
