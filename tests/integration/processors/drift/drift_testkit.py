"""Helpers of the drift checks' integration tests (a unique module name: test folders
share sys.path): scenario streams, publishing, services in a thread or a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from soundscape.database import database_url
from soundscape.messages import Detection
from soundscape.processors.drift import scenarios as sc
from soundscape.settings import Settings, settings_env
from soundscape.sinks.service import SinkService, run_until

#: Event time of the scenarios: an hour from 04:00 UTC (dawn, in the field).
START = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
START_NS = int(START.timestamp()) * 1_000_000_000
#: When the drifting stations change, minutes after START.
CHANGE_MIN = 40


def hour_of_stations() -> list[Detection]:
    """An hour of five stations, time-ordered: one unchanged, one whose noise floor rises
    by 20 dB at 04:40, one whose species change then, one losing 30 % of its chunks then,
    one going silent at 04:20."""
    after = 60 - CHANGE_MIN
    return sc.interleaved([
        sc.station_stream("steady", START_NS, sc.steady(60)),
        sc.station_stream("noisy", START_NS, sc.changed(CHANGE_MIN, after, sc.LOUDER)),
        sc.station_stream("new-season", START_NS,
                          sc.changed(CHANGE_MIN, after, sc.NEW_SPECIES)),
        sc.station_stream("gappy", START_NS,
                          sc.changed(CHANGE_MIN, after, sc.NORMAL, missing=0.3)),
        sc.station_stream("quiet", START_NS, sc.changed(20, 40, None)),
    ])


def small_windows(settings: Settings, tmp_path: Path, **drift: Any) -> Settings:
    """10-minute windows every 5 minutes against the previous 30 minutes, quick timers,
    state in the test's folder, an app id (consumer group) of the test's own."""
    values = {"window_s": 600, "hop_s": 300, "reference_windows": 3, "grace_s": 30,
              "silence_check_interval_s": 1.0, "data_dir": tmp_path / "drift",
              "app_id": f"drift-{tmp_path.name[-20:].strip('_-').lower() or 'test'}"} | drift
    return settings.model_copy(update={"drift": settings.drift.model_copy(update=values)})


def publish(settings: Settings, messages: Iterable[Detection]) -> int:
    from soundscape.processors.drift.publish import publish as send

    return send(settings, settings.topics.detections, messages)


class DriftProcess:
    """`soundscape drift run` as a child process, the way it runs in production."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
        env |= settings_env(settings) | {"SOUNDSCAPE_LOG_FORMAT": "json"}
        if os.environ.get("SOUNDSCAPE_CACHE_DIR"):
            env["SOUNDSCAPE_CACHE_DIR"] = os.environ["SOUNDSCAPE_CACHE_DIR"]
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "soundscape", "drift", "run"],
            env=env, stdout=self._file, stderr=subprocess.STDOUT,
        )

    def alive(self) -> None:
        code = self.process.poll()
        assert code is None, f"drift run exited with {code}:\n{self.log.read_text()[-3000:]}"

    def stop(self, timeout_s: float = 60) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._file.close()


class SinkThread:
    """The real sink, in a thread, storing what the drift checks publish."""

    def __init__(self, settings: Settings) -> None:
        sink = settings.sink.model_copy(update={"batch_size": 200, "batch_timeout_ms": 100})
        self.service = SinkService(settings.model_copy(update={"sink": sink}))
        self._stop = threading.Event()
        self.thread = run_until(self.service, lambda _: self._stop.is_set(), 600)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the sink did not stop"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             *checks: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for check in checks:
            check()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def rows(settings: Settings, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url(settings, "reader"), options="-c timezone=UTC") as conn:
        return conn.execute(query, params).fetchall()


def drift_messages(settings: Settings, idle_s: float = 3.0) -> list[Any]:
    """Every committed report on the drift topic (read until it stays quiet)."""
    from confluent_kafka import Consumer

    from soundscape.kafka_clients import consumer_config
    from soundscape.messages import DriftReport, parse

    consumer = Consumer(consumer_config(settings, f"drift-test-reader-{time.monotonic_ns()}"))
    consumer.subscribe([settings.topics.drift])
    found: list[DriftReport] = []
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < idle_s:
            batch = consumer.consume(500, 0.5)
            for message in batch:
                if message.error() is None:
                    found.append(parse(DriftReport, message.value()))
            if batch:
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return found


def batch_equivalent(settings: Settings, last_end: dict[str, int]) -> set[tuple[Any, ...]]:
    """The batch checks' reports for the windows a stream could close (a station's window
    closes when its own chunks pass the window's end + grace), as comparable tuples."""
    from datetime import timedelta

    from soundscape.processors.drift import batch

    grace, size = settings.drift.grace_s * 10**9, settings.drift.window_s * 10**9
    return {
        (r.station_id, r.check, r.window_start, r.value, r.alert)
        for r in batch.check(settings, START, START + timedelta(hours=1))
        if r.check == "silent" or r.window_start + size + grace <= last_end[r.station_id]
    }
