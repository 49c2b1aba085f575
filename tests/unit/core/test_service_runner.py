"""The one service runner: what SIGTERM and SIGINT do to every service (worker, sink,
station, replay; `drift run` keeps faust's handling), and its health endpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from typing import Any

import pytest

from soundscape.observability import free_port
from soundscape.service_runner import EventService, Service, run_service


class Recorder:
    """A service that runs until asked, and records what it was asked."""

    name = "recorder"

    def __init__(self, stops_after: int = 1) -> None:
        self.calls: list[str] = []
        self.stops_after = stops_after
        self.running = threading.Event()
        self.done = threading.Event()

    def run(self) -> str:
        """Polls, as the services' loops do: a signal handler that sets an Event the main
        thread is blocked waiting on can be missed by that wait (CPython)."""
        self.running.set()
        deadline = time.monotonic() + 60
        while not self.done.is_set():
            assert time.monotonic() < deadline, "never asked to stop"
            time.sleep(0.01)
        return "summary"

    def request_stop(self) -> None:
        self.calls.append("request_stop")
        if len(self.calls) >= self.stops_after:
            self.done.set()

    def stop_now(self) -> None:
        self.calls.append("stop_now")
        self.done.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": True, "calls": len(self.calls)}


def _signal_when_running(service: Recorder, *signals: signal.Signals) -> threading.Thread:
    """Each signal only after the service saw the one before: two signals sent before the
    main thread runs its handler merge into one (POSIX does not queue them)."""
    def send() -> None:
        assert service.running.wait(30)
        for count, sig in enumerate(signals, 1):
            os.kill(os.getpid(), sig)
            deadline = time.monotonic() + 30
            while len(service.calls) < count and time.monotonic() < deadline:
                time.sleep(0.01)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_asks_the_service_to_finish_and_returns_its_summary(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    service = Recorder()
    _signal_when_running(service, sig)
    assert run_service(service) == "summary"
    assert service.calls == ["request_stop"]
    assert signal.getsignal(sig) is before  # handlers restored


def test_a_second_signal_stops_at_once() -> None:
    service = Recorder(stops_after=99)  # ignores the first request, like a long drain
    _signal_when_running(service, signal.SIGTERM, signal.SIGTERM)
    run_service(service)
    assert service.calls == ["request_stop", "stop_now"]


def test_health_is_served_while_the_service_runs_and_not_after() -> None:
    service = Recorder()
    port = free_port()
    seen: dict[str, Any] = {}

    def probe() -> None:
        assert service.running.wait(10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            seen.update(json.loads(response.read()))
        service.request_stop()

    threading.Thread(target=probe, daemon=True).start()
    run_service(service, metrics_port=port)
    assert seen.get("healthy") is True
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_framework_that_owns_the_signals_keeps_them() -> None:
    marker = signal.getsignal(signal.SIGTERM)
    seen = {}
    service = EventService("drift", lambda stop: seen.setdefault("handler", signal.getsignal(signal.SIGTERM)),
                           lambda: {"healthy": True})
    run_service(service, handles_signals=True)
    assert seen["handler"] is marker


def test_event_services_and_the_real_services_fit_the_interface() -> None:
    from soundscape.producers.replay import Replay
    from soundscape.producers.station import Station
    from soundscape.sinks.service import SinkService

    stop_seen = threading.Event()
    service = EventService("worker", lambda stop: stop.wait(5) and stop_seen.set(),
                           lambda: {"healthy": True})
    assert isinstance(service, Service)
    for cls in (Replay, Station, SinkService):
        for method in ("run", "request_stop", "health"):
            assert callable(getattr(cls, method, None)), (cls.__name__, method)
        assert isinstance(cls.name, str)
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    run_service(service)
    assert stop_seen.is_set()


def test_counters_add_and_report_alike() -> None:
    from soundscape.result_sink import WriteCounts
    from soundscape.sinks.service import SinkStats

    total = WriteCounts(chunks=2, partitions_created=["a"])
    total.add(WriteCounts(chunks=3, duplicates=1, partitions_created=["b"]))
    assert (total.chunks, total.duplicates, total.partitions_created) == (5, 1, ["a", "b"])
    stats = SinkStats(consumed=4)
    stats.add(SinkStats(consumed=1, written=WriteCounts(chunks=7)))
    assert stats.consumed == 5 and stats.written.chunks == 7
    assert WriteCounts(expired=2).as_dict()["expired"] == 2
