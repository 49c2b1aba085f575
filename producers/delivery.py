"""Producer settings for producers that must never give a chunk up: retry until acked.

librdkafka's own retries (idempotent, so no duplicates and no reordering) run forever
(`message.timeout.ms=0`); reconnects back off up to `retry_backoff_max_s`. What waits is
bounded by the caller (a station sends at most `max_in_flight` chunks; the rest stay in
its disk spool). Connection errors are reported through a throttled warning, not one log
line per reconnect attempt.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError

from soundscape.logs import get_logger

log = get_logger(__name__)


class BrokerWatch:
    """Knows whether the broker answered lately; logs outages once a minute at most."""

    def __init__(self, what: str, every_s: float = 60.0) -> None:
        self.what = what
        self.every_s = every_s
        self.last_error: str | None = None
        self.errors = 0
        self._last_log = 0.0
        self.last_ack = time.monotonic()

    def on_error(self, err: KafkaError) -> None:
        self.errors += 1
        self.last_error = err.str()
        now = time.monotonic()
        if now - self._last_log >= self.every_s:
            self._last_log = now
            log.warning(f"{self.what}: Kafka unreachable, retrying", error=err.str(),
                        fatal=err.fatal())

    def acked(self) -> None:
        if self.last_error is not None and time.monotonic() - self._last_log < 3600:
            log.info(f"{self.what}: Kafka reachable again")
        self.last_error = None
        self._last_log = 0.0
        self.last_ack = time.monotonic()


def patient_overrides(retry_backoff_max_s: float, watch: BrokerWatch) -> dict[str, Any]:
    logging.getLogger("soundscape.librdkafka").setLevel(logging.CRITICAL)
    return {
        "message.timeout.ms": 0,
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": int(retry_backoff_max_s * 1000),
        "retry.backoff.ms": 200,
        "retry.backoff.max.ms": int(retry_backoff_max_s * 1000),
        "error_cb": watch.on_error,
    }
