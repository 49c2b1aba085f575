"""The sink's dead-letter topic: messages it cannot store, kept with the reason.

Value and key are the original bytes and the original headers are kept; the sink adds
`dlq_reason`, `dlq_source_topic`, `dlq_source_partition`, `dlq_source_offset`,
`dlq_rejected_by` and `dlq_rejected_at` (ns). Offsets of dead-lettered messages are
committed only after the broker has acknowledged their copies (`flush`).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from soundscape.errors import ServiceError
from soundscape.kafka_clients import producer_config
from soundscape.settings import Settings

MAX_REASON_CHARS = 2000


def dead_letter_headers(msg: Message, reason: str, rejected_by: str) -> list[tuple[str, bytes]]:
    headers = list(msg.headers() or [])
    headers += [
        ("dlq_reason", reason[:MAX_REASON_CHARS].encode()),
        ("dlq_source_topic", str(msg.topic()).encode()),
        ("dlq_source_partition", str(msg.partition()).encode()),
        ("dlq_source_offset", str(msg.offset()).encode()),
        ("dlq_rejected_by", rejected_by.encode()),
        ("dlq_rejected_at", str(time.time_ns()).encode()),
    ]
    return [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in headers]


class DeadLetters:
    def __init__(self, settings: Settings, rejected_by: str, **overrides: Any) -> None:
        self.topic = settings.topics.results_dlq
        self.rejected_by = rejected_by
        self.sent = 0
        self._failed: list[str] = []
        self._producer = Producer(producer_config(settings, **overrides))

    def send(self, msg: Message, reason: str) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._failed.append(err.str())

        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=msg.value(),
                    key=msg.key(),
                    headers=dead_letter_headers(msg, reason, self.rejected_by),
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every copy is acknowledged; raise rather than let offsets pass them."""
        left = self._producer.flush(timeout_s)
        if left or self._failed:
            failed, self._failed = self._failed, []
            raise ServiceError(
                f"dead-letter topic {self.topic}: {left} copies unacknowledged, "
                f"{len(failed)} failed ({'; '.join(failed[:3])})",
                hint="is Kafka reachable and the topic created? `soundscape infra topics`",
            )
