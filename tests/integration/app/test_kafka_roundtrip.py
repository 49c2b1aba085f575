"""Chunks through the real broker: every one back byte-identical, with all its headers."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope
from soundscape.kafka_clients import ChunkTooLargeError, admin_config, producer_config
from soundscape.app.roundtrip import run_roundtrip
from soundscape.settings import Settings

CHUNKS = int(os.environ.get("SOUNDSCAPE_TEST_ROUNDTRIP_CHUNKS", "1000"))


def test_thousand_chunks_come_back_identical(kafka_settings: Settings) -> None:
    result = run_roundtrip(kafka_settings, CHUNKS, stations=8)
    summary = result.summary()
    print(f"\nroundtrip of {CHUNKS} chunks: {summary}")

    assert result.chunks == CHUNKS
    assert len(result.received) == CHUNKS, f"{CHUNKS - len(result.received)} chunks missing"
    assert result.duplicates == 0 and not result.invalid
    for chunk_id, (payload, headers) in result.sent.items():
        got_payload, got_headers = result.received[chunk_id]
        assert got_payload == payload, f"payload of {chunk_id} differs"
        assert got_headers == headers, f"headers of {chunk_id} differ"
    assert 300 < summary["mean_chunk_kb"] < 550  # field-sized FLAC, as the issue asks
    assert summary["consume_mb_s"] > 0 and summary["publish_mb_s"] > 0


def test_topics_carry_the_deliberate_size_limit(kafka_settings: Settings) -> None:
    admin = AdminClient(admin_config(kafka_settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka_settings.topics.audio)
    configs = admin.describe_configs([resource])[resource].result()
    limit = int(configs["max.message.bytes"].value)
    assert kafka_settings.kafka.max_message_bytes < limit < kafka_settings.kafka.max_message_bytes * 2


def test_oversize_chunk_is_refused_with_a_clear_message(kafka_settings: Settings) -> None:
    publisher = ChunkPublisher(kafka_settings)
    payload = os.urandom(kafka_settings.kafka.max_message_bytes + 1)
    envelope = ChunkEnvelope.for_payload(
        payload, station_id="big", chunk_start=0, sample_rate=32000, seq=0, captured_at=0
    )
    with pytest.raises(ChunkTooLargeError, match="over the .*-byte message limit"):
        publisher.publish(envelope, payload)


def test_broker_itself_rejects_what_bypasses_the_client_check(kafka_settings: Settings) -> None:
    """A client configured for bigger messages still meets the topic's limit at the broker."""
    limit = kafka_settings.kafka.max_message_bytes
    producer = Producer(producer_config(kafka_settings, **{"message.max.bytes": limit * 3}))
    errors: list[KafkaError] = []
    producer.produce(
        kafka_settings.topics.audio,
        value=os.urandom(limit * 2),
        on_delivery=lambda err, _msg: errors.append(err),
    )
    producer.flush(30)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_unreachable_broker_fails_flush_clearly(services: Settings) -> None:
    from soundscape.errors import ServiceError
    from soundscape.infra.process import free_port

    dead = services.model_copy(
        update={"kafka": services.kafka.model_copy(
            update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})}
    )
    publisher = ChunkPublisher(dead, **{"message.timeout.ms": 2000})
    payload = b"x" * 100
    publisher.publish(
        ChunkEnvelope.for_payload(payload, station_id="s", chunk_start=0, sample_rate=32000,
                                  seq=0, captured_at=0),
        payload,
    )
    with pytest.raises((ServiceError, KafkaException)):
        publisher.flush(timeout_s=1)
