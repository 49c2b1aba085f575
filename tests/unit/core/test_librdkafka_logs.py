"""librdkafka's own lines go through the structured log, rate-limited during outages."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

from soundscape.infra.process import free_port
from soundscape.logs import RepeatLimiter


def _record(message: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("soundscape.librdkafka", level, __file__, 1, message, args, None)


def test_repeats_are_held_back_and_counted_per_kind() -> None:
    now = [0.0]
    limiter = RepeatLimiter(window_s=30, clock=lambda: now[0])
    fail = "%s [%s] %s"
    refused = ("FAIL", "rdkafka#consumer-1", "127.0.0.1:9/bootstrap: Connect failed (after 0ms)")
    assert limiter.filter(_record(fail, *refused))
    later = ("FAIL", "rdkafka#consumer-1", "127.0.0.1:9/bootstrap: Connect failed (after 12ms)")
    held = [limiter.filter(_record(fail, *later)) for _ in range(50)]
    assert not any(held)  # the same kind: only numbers differ
    assert limiter.filter(_record(fail, "ERROR", "rdkafka#consumer-1", "all brokers down"))
    assert limiter.filter(_record(fail, *later, level=logging.ERROR))  # another level, another kind
    now[0] = 31.0
    record = _record(fail, *later)
    assert limiter.filter(record) and record.suppressed == 50
    record = _record(fail, *later)
    assert not limiter.filter(record)


def test_a_client_facing_a_dead_broker_writes_json_lines_only() -> None:
    """A consumer and a producer pointed at a port nobody listens on, for four seconds:
    stderr holds JSON lines only, librdkafka's with facility and client, and few of them."""
    script = textwrap.dedent(f"""
        import time
        from confluent_kafka import Consumer, Producer
        from soundscape.kafka_clients import consumer_config, producer_config
        from soundscape.logs import configure_logging
        from soundscape.settings import Settings

        configure_logging("info", "json")
        settings = Settings(kafka={{"bootstrap_servers": "127.0.0.1:{free_port()}"}})
        consumer = Consumer(consumer_config(settings, "g", **{{"reconnect.backoff.ms": 10,
                                                              "reconnect.backoff.max.ms": 20}}))
        consumer.subscribe(["t"])
        producer = Producer(producer_config(settings, **{{"reconnect.backoff.ms": 10,
                                                         "reconnect.backoff.max.ms": 20}}))
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            consumer.poll(0.1)
            producer.poll(0.1)
        consumer.close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    kafka = [p for p in parsed if p.get("logger") == "soundscape.librdkafka"]
    assert kafka, "librdkafka said nothing about the dead broker"
    assert all({"facility", "client", "event", "level", "timestamp"} <= p.keys() for p in kafka)
    # Reconnecting every 10-20 ms for 4 s is hundreds of tries; a handful of lines remain.
    assert len(kafka) <= 12, [p["event"] for p in kafka]


def test_the_limiter_for_libraries_leaves_other_loggers_alone() -> None:
    limiter = RepeatLimiter(window_s=30, clock=lambda: 0.0, libraries=("aiokafka",))
    ours = logging.LogRecord("soundscape.sinks", logging.WARNING, __file__, 1, "same", (), None)
    assert all(limiter.filter(ours) for _ in range(5))
    for name, text in (("aiokafka", "Unable connect to node with id %s"),
                       ("aiokafka.conn", "Failed fetch messages from %s")):
        theirs = logging.LogRecord(name, logging.ERROR, __file__, 1, text, (2,), None)
        assert limiter.filter(theirs)
        assert not limiter.filter(theirs)


def test_aiokafka_facing_a_dead_broker_is_rate_limited_too() -> None:
    """The drift app's client (aiokafka) retries a dead broker ten times a second, each
    try an ERROR line: four seconds of it leave a handful of JSON lines."""
    script = textwrap.dedent(f"""
        import asyncio
        from aiokafka import AIOKafkaConsumer
        from soundscape.logs import configure_logging

        configure_logging("info", "json")

        async def main():
            consumer = AIOKafkaConsumer("t", bootstrap_servers="127.0.0.1:{free_port()}",
                                        retry_backoff_ms=10, request_timeout_ms=1000)
            try:
                await asyncio.wait_for(consumer.start(), 4)
            except Exception:
                pass
            for _ in range(40):  # connects again and again, as after a broker died
                try:
                    await consumer._client.bootstrap()
                except Exception:
                    pass
                await asyncio.sleep(0.1)
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    kafka = [p for p in parsed if str(p.get("logger", "")).startswith("aiokafka")]
    assert kafka, "aiokafka said nothing about the dead broker"
    assert len(kafka) <= 6, [p["event"] for p in kafka]
