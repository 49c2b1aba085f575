"""The sink's commits: consumed offsets and dead-letter copies in one Kafka transaction.

A message the sink cannot store is copied to the results dead-letter topic with its key,
value and original headers (less any forged `dlq_*`), plus `dlq_reason`,
`dlq_source_topic`, `dlq_source_partition`, `dlq_source_offset`, `dlq_rejected_by` and
`dlq_rejected_at` (ns). The copies of a batch and the batch's offsets commit together,
after the database committed its rows: a sink killed anywhere before that has its
copies aborted with the offsets, and the batch redelivered makes them once more. So a
bad message has exactly one copy across any number of restarts (readers read
committed), and the idempotent row writes skip what was already stored.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from soundscape.dead_letter import DLQ_HEADROOM_BYTES, carried_headers, detail_bytes, fit_copy
from soundscape.errors import ServiceError
from soundscape.kafka_clients import (
    ENVELOPE_OVERHEAD_BYTES,
    SEND_OFFSETS_TIMEOUT_S,
    producer_config,
    send_offsets_bounded,
)
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)

MAX_REASON_CHARS = 2000
#: Attempts at one commit before the sink gives up (and is restarted to redo the batch).
COMMIT_ATTEMPTS = 4


def dead_letter_headers(msg: Message, reason: str, rejected_by: str) -> list[tuple[str, bytes]]:
    return carried_headers(msg.headers()) + [
        ("dlq_reason", detail_bytes(reason[:MAX_REASON_CHARS])),
        ("dlq_source_topic", str(msg.topic()).encode()),
        ("dlq_source_partition", str(msg.partition()).encode()),
        ("dlq_source_offset", str(msg.offset()).encode()),
        ("dlq_rejected_by", rejected_by.encode()),
        ("dlq_rejected_at", str(time.time_ns()).encode()),
    ]


class TransactionalCommitter:
    """Commits offsets, with the dead-letter copies of their batch, atomically."""

    def __init__(self, settings: Settings, consumer: Consumer, group_id: str,
                 rejected_by: str) -> None:
        self.topic = settings.topics.results_dlq
        self.rejected_by = rejected_by
        self._consumer = consumer
        self._limit = settings.kafka.max_message_bytes + ENVELOPE_OVERHEAD_BYTES + DLQ_HEADROOM_BYTES
        # A new id per incarnation: two sinks of a group must never fence each other.
        instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._producer = Producer(producer_config(settings, **{
            "transactional.id": f"{group_id}-sink-{instance}",
            # Each transaction spans a commit only (ms); short, so one left open by a
            # killed sink stops holding back read-committed readers soon.
            "transaction.timeout.ms": 20_000,
            "message.max.bytes": self._limit,
        }))
        self._ready = False

    def commit(self, offsets: list[TopicPartition], rejects: list[tuple[Message, str]]) -> None:
        """Copies and offsets, all or nothing; retried, then ServiceError."""
        if not offsets and not rejects:
            return
        if not self._ready:
            self._producer.init_transactions(30)
            self._ready = True
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self._producer.begin_transaction()
                for msg, reason in rejects:
                    self._copy(msg, reason)
                send_offsets_bounded(self._producer, offsets,
                                     self._consumer.consumer_group_metadata(),
                                     SEND_OFFSETS_TIMEOUT_S)
                self._producer.commit_transaction(60)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                fatal = isinstance(error, KafkaError) and (error.fatal() or error.code() in (
                    KafkaError._FENCED, KafkaError.INVALID_PRODUCER_EPOCH))
                try:
                    self._producer.abort_transaction(30)
                except KafkaException:
                    pass
                if fatal or attempt == COMMIT_ATTEMPTS:
                    raise ServiceError(
                        f"committing {len(rejects)} dead-letter copies and the offsets of "
                        f"their batch failed {attempt} times: {exc}",
                        hint="is Kafka reachable and the topic created? `soundscape infra "
                        "topics`. The batch is stored; a restart redoes its commit.",
                    ) from None
                log.warning("commit transaction failed; retrying", attempt=attempt, error=str(exc))
                time.sleep(0.2 * attempt)

    def _copy(self, msg: Message, reason: str) -> None:
        value, headers = fit_copy(msg.key(), msg.value(),
                                  dead_letter_headers(msg, reason, self.rejected_by), self._limit)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=msg.key(), headers=headers)
                return
            except BufferError:
                self._producer.poll(0.1)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)

