"""A transactional call that librdkafka never returns from is cut short.

librdkafka 2.16's send_offsets_to_transaction can wait for good once the group
coordinator is gone (its request timeout is never checked: librdkafka issues 5456 and
5511); chaos runs saw sinks and workers silent for ten minutes after a broker kill.
`send_offsets_bounded` must give up within its own deadline, with the broker really
down (kill -9 of a broker of the test's own)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from soundscape.kafka_clients import (
    TransactionStuck,
    consumer_config,
    producer_config,
    send_offsets_bounded,
)
from soundscape.settings import Settings


def test_send_offsets_gives_up_when_the_coordinator_is_gone(
        own_broker: tuple[Settings, object]) -> None:
    settings, broker = own_broker
    topic = settings.topics.audio
    group = f"stuck-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(consumer_config(settings, group))
    producer = Producer(producer_config(settings, **{
        "transactional.id": f"{group}-txn", "transaction.timeout.ms": 60_000}))
    try:
        producer.init_transactions(30)
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer never joined its group"
            consumer.poll(0.2)
        producer.begin_transaction()
        producer.produce(settings.topics.detections, value=b"x")
        producer.flush(10)
        metadata = consumer.consumer_group_metadata()
        broker.kill()  # type: ignore[attr-defined]

        started = time.monotonic()
        with pytest.raises((TransactionStuck, KafkaException)):
            send_offsets_bounded(producer, [TopicPartition(topic, 0, 1)], metadata,
                                 timeout_s=2, grace_s=3)
        assert time.monotonic() - started < 2 + 3 + 3
    finally:
        # The stuck call still holds the producer: never destroy it under its feet.
        threading.Thread(target=consumer.close, daemon=True).start()
