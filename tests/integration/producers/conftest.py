"""Fixtures for the producers' integration tests: the CLI in a subprocess, reading topics
back, a broker of the test's own (to stop and start), and a real PulseAudio capture device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from pulse_device import pulse_device

from soundscape.envelope import ChunkEnvelope
from soundscape.kafka_clients import bootstrap_servers, consumer_config
from soundscape.settings import Settings


@dataclass
class Record:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int
    offset: int

    def envelope(self) -> ChunkEnvelope:
        return ChunkEnvelope.from_headers(self.headers, self.value, self.key)

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)


def read_topic(settings: Settings, topic: str, expected: int | None = None,
               idle_s: float = 5.0, timeout_s: float = 120.0) -> list[Record]:
    """Everything on `topic` from the beginning, until `expected` arrived (or idle)."""
    consumer = Consumer(consumer_config(settings, group_id=f"test-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected and time.monotonic() - last > 1:
                break
            if expected is None and records and time.monotonic() - last > idle_s:
                break
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                last = time.monotonic()
                records.append(Record(msg.key(), msg.value(), list(msg.headers() or []),
                                      msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return records


def cli_env(settings: Settings, state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `soundscape` subprocess talking to `settings`' broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
    env |= {
        "SOUNDSCAPE_STATE_DIR": str(state_dir),
        "SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(settings),
        "SOUNDSCAPE_TOPICS__AUDIO": settings.topics.audio,
        "SOUNDSCAPE_TOPICS__HEARTBEATS": settings.topics.heartbeats,
        "SOUNDSCAPE_LOG_FORMAT": "json",
    }
    return env | extra


def soundscape_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "soundscape", *args]


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(args: list[str], env: dict[str, str],
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(soundscape_cmd(*args), env=env, capture_output=True, text=True,
                              timeout=timeout)

    return run


@pytest.fixture
def pulse_mic(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PulseAudio capture device of this test's own (tests/pulse_device.py)."""
    with pulse_device(tmp_path) as env:
        yield env
