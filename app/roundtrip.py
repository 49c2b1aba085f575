"""Push generated chunks through the real broker and read every one back.

The foundation's end-to-end check (`soundscape demo`, `soundscape bench kafka`): it proves
the broker, topics, size limits and the envelope work together, and measures MB/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope, EnvelopeError
from soundscape.errors import ServiceError
from soundscape.kafka_clients import consumer_config
from soundscape.settings import Settings
from soundscape.synthetic.chunks import generated_chunks

_NS = 1_000_000_000


@dataclass
class RoundTrip:
    chunks: int = 0
    payload_bytes: int = 0
    generate_seconds: float = 0.0
    publish_seconds: float = 0.0
    consume_seconds: float = 0.0
    #: chunk_id -> (payload, headers) as sent and as read back
    sent: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=dict)
    received: dict[str, tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=dict)
    duplicates: int = 0
    invalid: list[str] = field(default_factory=list)

    @property
    def megabytes(self) -> float:
        return self.payload_bytes / 1e6

    def mb_per_s(self, seconds: float) -> float:
        return self.megabytes / seconds if seconds > 0 else float("inf")

    def mismatches(self) -> list[str]:
        problems = [f"missing {cid}" for cid in self.sent if cid not in self.received]
        for cid, (payload, headers) in self.received.items():
            if cid not in self.sent:
                problems.append(f"unexpected {cid}")
            elif self.sent[cid][0] != payload:
                problems.append(f"payload differs for {cid}")
            elif self.sent[cid][1] != headers:
                problems.append(f"headers differ for {cid}")
        return problems + self.invalid

    def summary(self) -> dict[str, float | int]:
        return {
            "chunks": self.chunks,
            "megabytes": round(self.megabytes, 1),
            "mean_chunk_kb": round(self.payload_bytes / max(self.chunks, 1) / 1e3, 1),
            "generate_s": round(self.generate_seconds, 2),
            "publish_s": round(self.publish_seconds, 2),
            "consume_s": round(self.consume_seconds, 2),
            "publish_mb_s": round(self.mb_per_s(self.publish_seconds), 1),
            "consume_mb_s": round(self.mb_per_s(self.consume_seconds), 1),
            "mismatches": len(self.mismatches()),
            "duplicates": self.duplicates,
        }


def run_roundtrip(
    settings: Settings,
    count: int,
    stations: int = 4,
    start_ns: int | None = None,
    progress: bool = False,
    idle_timeout_s: float = 30.0,
) -> RoundTrip:
    from tqdm import tqdm

    topic = settings.topics.audio
    result = RoundTrip()
    start_ns = start_ns if start_ns is not None else (time.time_ns() // _NS - 86_400) * _NS
    consumer = Consumer(
        consumer_config(settings, group_id=f"soundscape-roundtrip-{time.time_ns()}")
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        if not partitions:
            raise ServiceError(f"topic {topic} does not exist or has no partitions",
                               hint="`soundscape infra topics` creates it")
        # Remember where each partition ends now, so only this run's chunks are read back.
        begin = []
        for p in partitions:
            high = _high_watermark(consumer, TopicPartition(topic, p))
            begin.append(TopicPartition(topic, p, high if high >= 0 else OFFSET_END))

        # Generate first, so the publish figure measures Kafka, not FLAC encoding.
        started = time.monotonic()
        chunks = list(
            tqdm(
                generated_chunks(count, stations, start_ns),
                total=count, desc="generate", unit="chunk", disable=not progress,
            )
        )
        result.generate_seconds = time.monotonic() - started

        publisher = ChunkPublisher(settings)
        started = time.monotonic()
        for envelope, payload in tqdm(chunks, desc="publish", unit="chunk", disable=not progress):
            stamped = publisher.publish(envelope, payload)
            result.sent[str(stamped.chunk_id)] = (payload, stamped.to_headers())
            result.payload_bytes += len(payload)
        publisher.flush()
        result.publish_seconds = time.monotonic() - started
        result.chunks = count
        del chunks

        consumer.assign(begin)
        bar = tqdm(total=count, desc="consume", unit="chunk", disable=not progress)
        started = last_progress = time.monotonic()
        while len(result.received) < count and time.monotonic() - last_progress < idle_timeout_s:
            for msg in consumer.consume(num_messages=200, timeout=1.0):
                last_progress = time.monotonic()
                if msg.error():
                    result.invalid.append(f"consume error: {msg.error()}")
                    continue
                payload, headers = msg.value() or b"", msg.headers() or []
                try:
                    envelope = ChunkEnvelope.from_headers(headers, payload, msg.key())
                except EnvelopeError as exc:
                    result.invalid.append(f"offset {msg.offset()}: {exc}")
                    continue
                cid = str(envelope.chunk_id)
                if cid in result.received:
                    result.duplicates += 1
                result.received[cid] = (payload, list(headers))
                bar.update(1)
        bar.close()
        result.consume_seconds = time.monotonic() - started
    finally:
        consumer.close()
    return result


def _high_watermark(consumer: Consumer, partition: TopicPartition, timeout_s: float = 30.0) -> int:
    """The partition's end offset; a partition whose leader is still settling is retried."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, timeout=10)[1])
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and (
                error.retriable()
                or error.code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                    KafkaError.LEADER_NOT_AVAILABLE)
            )
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
