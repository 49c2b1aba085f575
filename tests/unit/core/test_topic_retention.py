"""Topic retention by bytes as well as time (topics.retention_gb)."""

from __future__ import annotations

from soundscape.kafka_topics import topic_specs
from soundscape.settings import Settings


def _configs(settings: Settings) -> dict[str, dict[str, str]]:
    return {spec.name: spec.configs() for spec in topic_specs(settings)}


def test_by_time_only_unless_a_size_is_set() -> None:
    configs = _configs(Settings())
    assert all(c["retention.bytes"] == "-1" and "segment.bytes" not in c for c in configs.values())


def test_audio_and_its_dlq_are_bounded_per_partition_with_small_segments() -> None:
    settings = Settings(topics={"retention_gb": 12, "partitions": 6})
    configs = _configs(settings)
    for name in (settings.topics.audio, settings.topics.audio_dlq):
        assert int(configs[name]["retention.bytes"]) == 2 * 1024**3  # 12 GB over 6 partitions
        assert int(configs[name]["segment.bytes"]) == 512 * 1024**2
    assert configs[settings.topics.detections]["retention.bytes"] == "-1"  # results: by time


def test_a_tiny_bound_still_keeps_a_few_chunks_and_segments_stay_valid() -> None:
    settings = Settings(topics={"retention_gb": 0.001, "partitions": 100})
    audio = _configs(settings)[settings.topics.audio]
    limit = int(audio["max.message.bytes"])
    assert int(audio["retention.bytes"]) == 4 * limit
    huge = _configs(Settings(topics={"retention_gb": 10_000}))[settings.topics.audio]
    assert int(huge["segment.bytes"]) == 1 << 30  # Kafka's int limit respected
