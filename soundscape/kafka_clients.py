"""Kafka client configuration built from Settings, so every client agrees on limits and security."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from soundscape.errors import ServiceError, UserError
from soundscape.logs import LIBRDKAFKA_LOGGER
from soundscape.local_services import (
    KAFKA_ADMIN_USER,
    local_kafka_address,
    local_kafka_password,
    local_kafka_secured,
)
from soundscape.settings import Settings, config_file_path

#: Room for headers and record-batch framing on top of the payload limit.
ENVELOPE_OVERHEAD_BYTES = 64 * 1024


class ChunkTooLargeError(UserError):
    """A payload over the configured message limit: refused before it reaches the broker."""


def bootstrap_servers(settings: Settings) -> str:
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    address = local_kafka_address(settings)
    if address is None:
        raise ServiceError(
            "no Kafka broker configured and none started by Soundscape",
            hint="run `soundscape infra up`, or set SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS",
        )
    return address


def common_config(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers(settings),
        "security.protocol": kafka.security_protocol,
        "client.dns.lookup": "use_all_dns_ips",
        # librdkafka's own log lines go through logging (and so structlog), not raw stderr.
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }
    if kafka.debug:
        config["debug"] = kafka.debug
    if kafka.security_protocol.startswith("SASL"):
        if not kafka.sasl_username or kafka.sasl_password is None:
            raise UserError(
                f"security_protocol {kafka.security_protocol} needs a SASL user and password",
                hint="set SOUNDSCAPE_KAFKA__SASL_USERNAME and SOUNDSCAPE_KAFKA__SASL_PASSWORD",
            )
        config |= {
            "sasl.mechanism": kafka.sasl_mechanism,
            "sasl.username": kafka.sasl_username,
            "sasl.password": kafka.sasl_password.get_secret_value(),
        }
    elif local_kafka_secured(settings):
        # The remote-stations profile's loopback listener: the operator's commands as the
        # broker's admin, whose password only the account that ran `infra up` can read.
        # Services run as principals of their own (local_services.as_local_service).
        config |= {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": KAFKA_ADMIN_USER,
            "sasl.password": local_kafka_password(settings, KAFKA_ADMIN_USER),
        }
    if kafka.ssl_ca_location:
        config["ssl.ca.location"] = str(_beside_config(kafka.ssl_ca_location))
    return config


def _beside_config(path: Path) -> Path:
    """A relative CA path is read beside the config file that names it (a service's
    bundle unpacked anywhere keeps working), else from the working folder."""
    if path.is_absolute() or path.exists():
        return path
    config = config_file_path()
    return config.parent / path if config is not None else path


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all, and a message limit matching the topics'."""
    config = common_config(settings) | {
        "enable.idempotence": True,
        "acks": "all",
        "message.max.bytes": settings.kafka.max_message_bytes + ENVELOPE_OVERHEAD_BYTES,
        "compression.type": "none",  # FLAC is already compressed
        "linger.ms": 5,
    }
    return config | overrides


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    limit = settings.kafka.max_message_bytes + ENVELOPE_OVERHEAD_BYTES
    config = common_config(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.partition.fetch.bytes": limit,
        "fetch.max.bytes": max(limit, 64 * 1024 * 1024),
        "receive.message.max.bytes": max(limit, 64 * 1024 * 1024) + 1024 * 1024,
        # Heartbeats come from librdkafka's own thread: a short session only moves a
        # killed consumer's partitions sooner.
        "session.timeout.ms": settings.kafka.session_timeout_ms,
        "heartbeat.interval.ms": min(3000, settings.kafka.session_timeout_ms // 3),
        # Incremental rebalances: a joining or leaving member moves only its share, so the
        # others never stop; the callbacks get (and must handle) only the partitions moved.
        "partition.assignment.strategy": settings.kafka.assignment_strategy,
    }
    if settings.kafka.instance_id:
        config["group.instance.id"] = settings.kafka.instance_id
    return config | overrides


def admin_config(settings: Settings) -> dict[str, Any]:
    return common_config(settings)


def check_payload_size(settings: Settings, payload: bytes, what: str = "chunk") -> None:
    limit = settings.kafka.max_message_bytes
    if len(payload) > limit:
        raise ChunkTooLargeError(
            f"{what} payload is {len(payload):,} bytes, over the {limit:,}-byte message limit",
            hint="send FLAC rather than WAV, or raise SOUNDSCAPE_KAFKA__MAX_MESSAGE_BYTES "
            "(topics and broker take it on the next `soundscape infra up`)",
        )


def message_limits(admin: Any, names: list[str], timeout_s: float = 30.0) -> dict[str, int]:
    """Each topic's effective max.message.bytes, as the brokers report it."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource

    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout_s).items():
        try:
            entry = future.result().get("max.message.bytes")
        except KafkaException as exc:
            raise ServiceError(f"describing topic {resource.name} failed: {exc}") from None
        if entry is not None and entry.value is not None:
            limits[resource.name] = int(entry.value)
    return limits


def next_offsets(messages: list[Any]) -> list[Any]:
    """The offsets to commit after `messages` (the next one of each partition seen)."""
    from confluent_kafka import TopicPartition

    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        if msg.error() is None:
            key = (msg.topic(), msg.partition())
            last[key] = max(last.get(key, -1), msg.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def raise_if_fatal(error: Any) -> None:
    """A fatal consumer error leaves the consumer unusable for good (a static member fenced
    by another with its group.instance.id after a coordinator moved, seen in a chaos run:
    the worker logged the error for minutes and its partitions stood still). Stop the
    service: it is started again with a new consumer, and what it had not committed is
    redone."""
    from confluent_kafka import KafkaError

    if error is not None and (error.fatal() or error.code() == KafkaError._FATAL):
        raise ServiceError(f"the Kafka consumer failed for good: {error.str()}",
                           hint="the service stops so that it is started again with a new "
                                "consumer; work it had not committed is redone")


def without_errors(messages: list[Any]) -> list[Any]:
    """The messages that carry records; consumer errors are logged (end-of-partition
    events, which only say a partition is caught up, are dropped quietly), and a fatal
    one stops the service (`raise_if_fatal`)."""
    from confluent_kafka import KafkaError

    from soundscape.logs import get_logger

    good = []
    for msg in messages:
        error = msg.error()
        if error is None:
            good.append(msg)
            continue
        raise_if_fatal(error)
        if error.code() != KafkaError._PARTITION_EOF:
            get_logger(__name__).warning("consumer error", error=str(error))
    return good



class TransactionStuck(ServiceError):
    """A transactional call that librdkafka did not return from within its own timeout."""


#: The services' timeout for sending a batch's offsets: a stuck call ends the service after
#: this plus STUCK_GRACE_S (25 s), a timed-out one aborts and redoes the batch.
SEND_OFFSETS_TIMEOUT_S = 20.0
#: How long past its own timeout a transactional call may take before it counts as stuck
#: (a call that works takes milliseconds; one that waits out a coordinator move, seconds).
STUCK_GRACE_S = 5.0


def send_offsets_bounded(producer: Any, offsets: list[Any], group_metadata: Any,
                         timeout_s: float, grace_s: float = STUCK_GRACE_S) -> None:
    """`producer.send_offsets_to_transaction`, with a deadline that holds.

    librdkafka 2.16 can block in it for good when the group coordinator went away during
    the call: the coordinator request's timeout is never checked (librdkafka issues 5456
    and 5511). Chaos runs saw sinks and workers wait there silently for ten minutes after
    a broker kill. The call runs on a thread of its own (it releases the GIL); if it has
    not returned `grace_s` after `timeout_s`, TransactionStuck (a ServiceError: the
    service stops and is started again with a new producer; its open transaction is
    aborted by the broker and the batch redone). The stuck thread is left behind: nothing
    can cancel it, and the process is about to end.
    """
    import threading

    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            producer.send_offsets_to_transaction(offsets, group_metadata, timeout_s)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=call, name="send-offsets", daemon=True)
    thread.start()
    thread.join(timeout_s + grace_s)
    if not outcome:
        raise TransactionStuck(
            f"sending the offsets to the transaction did not return in {timeout_s + grace_s:g} s "
            "(librdkafka can wait for good on a group coordinator that went away)",
            hint="the service stops so that it is started again with a new producer; its "
                 "open transaction is aborted and the batch redone")
    if outcome[0] is not None:
        raise outcome[0]
