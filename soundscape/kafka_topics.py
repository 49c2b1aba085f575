"""Create the topics of the design with deliberate partitions, retention and size limits.

Works against any cluster (the local broker or an external one): creates what is missing,
raises partition counts that are below the setting, and sets size and retention configs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from soundscape.dead_letter import DLQ_HEADROOM_BYTES
from soundscape.errors import ServiceError
from soundscape.kafka_clients import ENVELOPE_OVERHEAD_BYTES, admin_config, message_limits
from soundscape.settings import Settings, TopicSettings

_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    max_message_bytes: int
    retention_bytes: int = -1  # per partition; -1: by time only

    def configs(self) -> dict[str, str]:
        configs = {
            "retention.ms": str(self.retention_ms),
            "retention.bytes": str(self.retention_bytes),
            "max.message.bytes": str(self.max_message_bytes),
            "cleanup.policy": "delete",
            "message.timestamp.type": "CreateTime",
        }
        if self.retention_bytes > 0:  # whole segments go: keep them small beside the bound
            segment = min(max(self.retention_bytes // 4, 2 * self.max_message_bytes), 1 << 30)
            configs["segment.bytes"] = str(segment)
        return configs


def topic_specs(settings: Settings, topics: TopicSettings | None = None) -> list[TopicSpec]:
    t = topics or settings.topics
    limit = settings.kafka.max_message_bytes + ENVELOPE_OVERHEAD_BYTES
    audio_ms = t.retention_hours * _HOUR_MS
    results_ms = t.results_retention_hours * _HOUR_MS
    # Per partition, and never under one segment's worth of messages (Kafka deletes whole
    # segments: a smaller bound would keep nothing past the active one).
    audio_bytes = -1 if t.retention_gb is None else \
        max(int(t.retention_gb * 1024**3 / t.partitions), 4 * limit)
    return [
        TopicSpec(t.audio, t.partitions, audio_ms, limit, audio_bytes),
        TopicSpec(t.audio_dlq, t.partitions, audio_ms, limit + DLQ_HEADROOM_BYTES, audio_bytes),
        TopicSpec(t.detections, t.partitions, results_ms, limit),
        TopicSpec(t.heartbeats, t.partitions, results_ms, limit),
        TopicSpec(t.drift, t.partitions, results_ms, limit),
        TopicSpec(t.results_dlq, t.partitions, results_ms, limit + DLQ_HEADROOM_BYTES),
        TopicSpec(t.shadow_detections, t.partitions, results_ms, limit),
        TopicSpec(t.edge_detections, t.partitions, results_ms, limit),
    ]


def durability(replication: int) -> dict[str, str]:
    """With three copies, a write (acks=all) needs two in sync: one node may fail with
    nothing refused or lost, a second failure refuses writes rather than risk them."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}


def _await_brokers(admin: AdminClient, brokers: int, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
        if len(metadata.brokers) >= brokers:
            return metadata
        if time.monotonic() >= deadline:
            raise ServiceError(f"only {len(metadata.brokers)} of {brokers} Kafka brokers are "
                               "in the cluster's metadata",
                               hint="`soundscape infra status` shows which one is missing")
        time.sleep(0.5)


def ensure_topics(
    settings: Settings, topics: TopicSettings | None = None, timeout_s: float = 30.0,
    brokers: int | None = None,
) -> dict[str, str]:
    """Returns what happened to each topic: created, grew to N partitions, or ok."""
    admin = AdminClient(admin_config(settings))
    specs = topic_specs(settings, topics)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceError(
            f"cannot reach Kafka at {admin_config(settings)['bootstrap.servers']}: {exc}",
            hint="is it running? `soundscape infra status`",
        ) from None
    replication = min(3, max(1, len(metadata.brokers)))
    if brokers is not None and len(metadata.brokers) < brokers:
        # A cluster just started: a node's registration may reach this client's view a
        # moment after the others; topics made now would get too few replicas for good.
        metadata = _await_brokers(admin, brokers, timeout_s)
        replication = min(3, brokers)
    outcome: dict[str, str] = {}

    missing = [s for s in specs if s.name not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication,
                      config=s.configs() | durability(replication)) for s in missing],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            _result(future, f"creating topic {name}", allow=KafkaError.TOPIC_ALREADY_EXISTS)
            outcome[name] = "created"

    if missing:
        _wait_for_leaders(admin, [s.name for s in missing], timeout_s)

    existing = [s for s in specs if s.name in metadata.topics]
    grow = [s for s in existing if len(metadata.topics[s.name].partitions) < s.partitions]
    if grow:
        futures = admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grow])
        for name, future in futures.items():
            _result(future, f"adding partitions to {name}")
            outcome[name] = "partitions raised"
    if existing:
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                s.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in (s.configs() | durability(replication)).items()
                ],
            )
            for s in existing
        ]
        for resource, future in admin.incremental_alter_configs(resources).items():
            _result(future, f"configuring topic {resource.name}")
            outcome.setdefault(resource.name, "ok")
    check_dead_letter_room(admin, settings, topics, timeout_s)
    return outcome


def check_dead_letter_room(
    admin: AdminClient, settings: Settings, topics: TopicSettings | None = None,
    timeout_s: float = 30.0,
) -> None:
    """A dead-letter topic must take any message of its source topic plus the `dlq_*`
    headers; if it cannot, dead-lettering a large message fails and the worker stalls."""
    t = topics or settings.topics
    pairs = [(t.audio, t.audio_dlq), (t.detections, t.results_dlq)]
    limits = message_limits(admin, [name for pair in pairs for name in pair], timeout_s)
    for source, dlq in pairs:
        if source in limits and dlq in limits and limits[dlq] < limits[source] + DLQ_HEADROOM_BYTES:
            raise ServiceError(
                f"topic {dlq} takes messages up to {limits[dlq]:,} bytes, but {source} takes "
                f"{limits[source]:,}: a dead-letter copy of a large message would not fit",
                hint=f"give {dlq} max.message.bytes >= {limits[source] + DLQ_HEADROOM_BYTES:,} "
                "(`soundscape infra topics` does it where it may alter topic configs)",
            )


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """A created topic is usable once every partition's leader answers for it: metadata
    naming a leader is not enough (seen: NOT_LEADER_FOR_PARTITION right after creation)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(
            name in topics
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ) and _leaders_answer(admin, {n: list(topics[n].partitions) for n in names}):
            return
        time.sleep(0.1)
    raise ServiceError(f"topics {', '.join(names)} have no leaders after {timeout_s:.0f} s")


def _leaders_answer(admin: AdminClient, partitions: dict[str, list[int]]) -> bool:
    request = {TopicPartition(t, p): OffsetSpec.latest() for t, ps in partitions.items() for p in ps}
    try:
        for future in admin.list_offsets(request, request_timeout=5).values():
            future.result()
    except KafkaException:
        return False
    return True


def delete_topics(settings: Settings, names: list[str], timeout_s: float = 30.0) -> None:
    admin = AdminClient(admin_config(settings))
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        _result(future, f"deleting topic {name}", allow=KafkaError.UNKNOWN_TOPIC_OR_PART)


def _result(future, what: str, allow: int | None = None) -> None:  # type: ignore[no-untyped-def]
    try:
        future.result()
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if allow is not None and isinstance(error, KafkaError) and error.code() == allow:
            return
        raise ServiceError(f"{what} failed: {exc}") from None


TOPIC_FIELDS = ("audio", "detections", "audio_dlq", "heartbeats", "drift", "results_dlq",
                "shadow_detections", "edge_detections")


def scratch_topics(settings: Settings, suffix: str) -> Settings:
    """The same settings with every topic renamed `<name>.bench-<suffix>`: benchmarks and
    tests run on topics of their own and delete them afterwards."""
    topics = settings.topics.model_copy(
        update={name: f"{getattr(settings.topics, name)}.bench-{suffix}" for name in TOPIC_FIELDS})
    return settings.model_copy(update={"topics": topics})
