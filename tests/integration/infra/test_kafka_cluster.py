"""The local three-node cluster (`infra up --brokers 3`), reached the way an external
cluster is (a bootstrap list of several brokers): topics with three replicas and
min.insync.replicas 2, a broker killed with -9 while an idempotent acks=all producer
writes, nothing refused, lost or doubled, the broker back and in the metadata again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from soundscape.infra import stack
from soundscape.infra.kafka.cluster import KafkaCluster
from soundscape.kafka_clients import admin_config, consumer_config, producer_config
from soundscape.kafka_topics import ensure_topics
from soundscape.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

MESSAGES = 600


@pytest.fixture
def cluster_settings(tmp_path: Path) -> Iterator[Settings]:
    local = Settings(state_dir=tmp_path / "state", kafka={"heap": "384m"},
                     topics={"retention_gb": 3})
    try:
        report = stack.up(local, postgres=False, brokers=3)
        assert report["kafka"]["brokers"] == 3
        yield local
    finally:
        stack.down(local)


def test_three_brokers_survive_a_killed_one_with_nothing_lost(cluster_settings: Settings) -> None:
    cluster = KafkaCluster(cluster_settings)
    bootstrap = stack.status(cluster_settings)["bootstrap_servers"]
    assert len(bootstrap.split(",")) == 3
    # The settings a user of an external cluster writes: the bootstrap list, nothing local.
    external = cluster_settings.model_copy(update={"kafka": cluster_settings.kafka.model_copy(
        update={"bootstrap_servers": bootstrap})})
    ensure_topics(external)
    admin = AdminClient(admin_config(external))
    topic = external.topics.detections
    metadata = admin.list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert {len(p.replicas) for p in metadata.topics[topic].partitions.values()} == {3}
    (described,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    assert described.result()["min.insync.replicas"].value == "2"
    audio = external.topics.audio  # bounded by bytes too: 3 GB over its 6 partitions
    (described,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, audio)]).values()
    assert described.result()["retention.bytes"].value == str(3 * 1024**3 // 6)

    failures: list[str] = []
    producer = Producer(producer_config(external))
    for i in range(MESSAGES):
        if i == MESSAGES // 3:
            producer.flush(30)
            assert cluster.kill_node(2)
        producer.produce(topic, key=f"station-{i % 7}", value=str(i).encode(),
                         on_delivery=lambda err, _msg: failures.append(str(err)) if err else None)
        producer.poll(0)
        time.sleep(0.005)
    assert producer.flush(60) == 0
    assert failures == []
    assert [n.running for n in cluster.status()] == [True, False, True]
    deadline = time.monotonic() + 30  # the quorum elects a controller among the two left
    while (controller := stack.status(cluster_settings)["kafka"].get("controller")) is None:
        assert time.monotonic() < deadline, "no controller reported"
        time.sleep(0.5)
    assert controller in (1, 3)

    cluster.start_node(2)
    deadline = time.monotonic() + 90
    while True:
        health = cluster.health()
        if health["brokers_in_metadata"] == [1, 2, 3] and health["under_replicated_partitions"] == 0:
            break
        assert time.monotonic() < deadline, health
        time.sleep(1)

    consumer = Consumer(consumer_config(external, f"check-{time.time_ns()}"))
    consumer.subscribe([topic])
    values: list[int] = []
    deadline = time.monotonic() + 60
    while len(values) < MESSAGES and time.monotonic() < deadline:
        values += [int(m.value()) for m in consumer.consume(500, 1.0) if m.error() is None]
    time.sleep(1)
    values += [int(m.value()) for m in consumer.consume(500, 1.0) if m.error() is None]
    consumer.close()
    assert sorted(values) == list(range(MESSAGES))  # each once: none lost, none doubled
