"""Publish chunks to the audio topic with an idempotent producer and know what was acked.

Stations, the replay and the demo all publish through this, so size limits, headers and
delivery accounting are the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from soundscape.counters import Counters
from soundscape.envelope import ChunkEnvelope
from soundscape.errors import ServiceError
from soundscape.kafka_clients import check_payload_size, producer_config
from soundscape.settings import Settings

OnDelivered = Callable[[ChunkEnvelope, Message], None]
#: Called with the chunk and Kafka's error when a delivery fails (the station re-sends it
#: from its spool; the replay stops advancing its checkpoint there).
OnFailed = Callable[[ChunkEnvelope, KafkaError], None]


@dataclass
class DeliveryStats(Counters):
    sent: int = 0
    acked: int = 0
    failed: int = 0
    bytes_acked: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.failed


class ChunkPublisher:
    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        on_delivered: OnDelivered | None = None,
        on_failed: OnFailed | None = None,
        **overrides: object,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.topics.audio
        self.stats = DeliveryStats()
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self._producer = Producer(producer_config(settings, **overrides))

    def publish(self, envelope: ChunkEnvelope, payload: bytes) -> ChunkEnvelope:
        """Queue one chunk (stamped with published_at now); blocks while the queue is full.

        The Kafka timestamp stays the publish time: an archive replayed years later must
        not fall straight out of time-based retention.
        """
        check_payload_size(self.settings, payload, f"chunk {envelope.chunk_id}")
        stamped = envelope.with_published_at(time.time_ns())
        headers = stamped.to_headers()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.stats.failed += 1
                self.stats.errors.append(f"{stamped.chunk_id}: {err.str()}")
                del self.stats.errors[:-100]  # the latest are enough to say what is wrong
                if self._on_failed is not None:
                    self._on_failed(stamped, err)
                return
            self.stats.acked += 1
            self.stats.bytes_acked += len(payload)
            if self._on_delivered is not None:
                self._on_delivered(stamped, msg)

        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=payload,
                    key=stamped.key,
                    headers=headers,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self.stats.sent += 1
        self._producer.poll(0)
        return stamped

    def poll(self, timeout_s: float = 0.0) -> int:
        return self._producer.poll(timeout_s)

    def in_queue(self) -> int:
        """Messages handed to the client and not yet acknowledged or failed."""
        return len(self._producer)

    def flush(self, timeout_s: float = 60.0) -> DeliveryStats:
        """Wait for every queued chunk's acknowledgement; raise if any is still in flight."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise ServiceError(
                f"{remaining} chunks not acknowledged by Kafka after {timeout_s:.0f} s",
                hint="is the broker reachable? `soundscape infra status`",
            )
        return self.stats
