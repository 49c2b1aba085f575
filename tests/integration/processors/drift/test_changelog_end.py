"""Where a changelog's committed data really ends, read from a real broker: commit markers,
aborted transactions and a tail longer than the first window all end below the highwater."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition

from soundscape.kafka_clients import common_config, producer_config
from soundscape.processors.drift.changelog_end import FIRST_WINDOW, last_data_offsets
from soundscape.settings import Settings


def transactional(settings: Settings, name: str) -> Producer:
    producer = Producer(producer_config(settings, **{"transactional.id": name}))
    producer.init_transactions(30)
    return producer


def in_transaction(producer: Producer, topic: str, partition: int, count: int,
                   commit: bool) -> None:
    producer.begin_transaction()
    for i in range(count):
        producer.produce(topic, value=b"%d" % i, partition=partition)
    assert producer.flush(30) == 0  # in the log before the end: an abort purges what is queued
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def high_watermarks(settings: Settings, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    consumer = Consumer(common_config(settings) | {"group.id": "probe-test"})
    try:
        return {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)}
    finally:
        consumer.close()


def settled_ends(settings: Settings, topic: str,
                 expected: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """The coordinator writes the markers after EndTxn returns: wait until they are in."""
    deadline = time.monotonic() + 30
    while (ends := high_watermarks(settings, topic, len(expected))) != expected:
        assert time.monotonic() < deadline, f"watermarks {ends}, expected {expected}"
        time.sleep(0.1)
    return ends


def test_last_data_offsets_skip_markers_aborted_records_and_long_tails(
    kafka_settings: Settings,
) -> None:
    topic = kafka_settings.topics.detections  # 3 partitions, this test's own
    producer = transactional(kafka_settings, f"probe-test-{topic}")
    # partition 0: 5 committed records (offsets 0-4, marker 5), then 3 aborted (6-8, marker 9)
    in_transaction(producer, topic, 0, 5, commit=True)
    in_transaction(producer, topic, 0, 3, commit=False)
    # partition 1: only an aborted record and its marker: no data at all
    in_transaction(producer, topic, 1, 1, commit=False)
    # partition 2: one committed record, then more aborted offsets than the first window
    in_transaction(producer, topic, 2, 1, commit=True)
    aborted = FIRST_WINDOW // 2 + 5
    for _ in range(aborted):
        in_transaction(producer, topic, 2, 1, commit=False)
    expected_ends = {(topic, 0): 10, (topic, 1): 2, (topic, 2): 2 + 2 * aborted}
    ends = settled_ends(kafka_settings, topic, expected_ends)

    last = last_data_offsets(common_config(kafka_settings), ends, timeout_s=30)

    assert last == {(topic, 0): 4, (topic, 1): -1, (topic, 2): 0}


def test_a_plain_partition_ends_at_its_last_record_and_an_empty_one_before_its_start(
    kafka_settings: Settings,
) -> None:
    topic = kafka_settings.topics.detections
    producer = Producer(producer_config(kafka_settings))
    for i in range(7):
        producer.produce(topic, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    ends = high_watermarks(kafka_settings, topic, 2)

    assert last_data_offsets(common_config(kafka_settings), ends, timeout_s=30) == {
        (topic, 0): 6, (topic, 1): -1}
