"""systemd's notify protocol through the one runner, read from a real datagram socket:
READY, the watchdog petted only while healthy, STOPPING; nothing without systemd."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundscape.service_runner import EventService, run_service
from soundscape.systemd_notify import notify, watchdog_interval_s


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A NOTIFY_SOCKET as systemd makes it; yields the messages received, in order."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    received: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                received.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # WatchdogSec=0.2: a pet every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield received
    stop.set()
    reader.join()
    sock.close()


def _run_for(seconds: float, healthy: dict[str, bool]) -> None:
    def loop(stop: threading.Event) -> str:
        stop.wait(seconds)
        return "done"

    assert run_service(EventService("probe", loop, lambda: dict(healthy))) == "done"


def test_ready_watchdog_while_healthy_and_stopping(systemd: list[str]) -> None:
    _run_for(0.6, {"healthy": True})
    time.sleep(0.2)
    assert systemd[0] == "READY=1" and systemd[-1] == "STOPPING=1"
    assert systemd.count("WATCHDOG=1") >= 3


def test_an_unhealthy_service_is_left_to_the_watchdog(systemd: list[str]) -> None:
    _run_for(0.6, {"healthy": False})
    time.sleep(0.2)
    assert systemd == ["READY=1", "STOPPING=1"]


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_the_watchdog_is_for_the_process_systemd_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None
