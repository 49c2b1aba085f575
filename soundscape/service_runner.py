"""One way to run a long-lived service (worker, sink, station, replay, drift checks):
signal handling, /healthz and /metrics, and a structured log of start and stop.

The first SIGTERM or SIGINT asks the service to finish what it has in hand
(`request_stop`); a second one asks it to stop at once (`stop_now`, where the service
has one). A service whose framework owns the signals (faust, for `drift run`) says so
with `handles_signals`, and the runner only serves its health. Under systemd
(`Type=notify`) the runner reports READY and STOPPING, and pets the watchdog while the
service is healthy.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from prometheus_client import REGISTRY, CollectorRegistry

from soundscape.logs import get_logger
from soundscape.observability import ObservabilityServer
from soundscape.systemd_notify import Watchdog, notify, watchdog_interval_s

log = get_logger("soundscape.service")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Service(Protocol[T_co]):
    """What the runner needs: `run` blocks until the service stops and returns its
    summary; `request_stop` and `health` are called from other threads."""

    name: str

    def run(self) -> T_co: ...

    def request_stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


@dataclass
class EventService(Generic[T]):
    """A service whose loop takes a stop event (`target(stop)`): the worker, the replay."""

    name: str
    target: Callable[[threading.Event], T]
    health_of: Callable[[], dict[str, Any]]
    stop: threading.Event = field(default_factory=threading.Event)
    stop_now_event: threading.Event | None = None

    def run(self) -> T:
        return self.target(self.stop)

    def request_stop(self) -> None:
        self.stop.set()

    def stop_now(self) -> None:
        self.stop.set()
        if self.stop_now_event is not None:
            self.stop_now_event.set()

    def health(self) -> dict[str, Any]:
        return self.health_of()


def run_service(service: Service[T], *, metrics_host: str = "127.0.0.1",
                metrics_port: int | None = None, registry: CollectorRegistry = REGISTRY,
                handles_signals: bool = False) -> T:
    """Run `service` in this thread until it stops; returns what its `run` returns.
    `metrics_port` 0 or None serves no health endpoint."""
    signals_seen: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals_seen.append(signum)
        name = signal.Signals(signum).name
        if len(signals_seen) == 1:
            log.info("stop requested", service=service.name, signal=name,
                     then="finishing the work in hand")
            service.request_stop()
        else:
            log.warning("stop requested again", service=service.name, signal=name,
                        then="stopping now")
            getattr(service, "stop_now", service.request_stop)()

    previous: dict[int, Any] = {}
    if not handles_signals and threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    if metrics_port:
        server = ObservabilityServer(service.health, host=metrics_host, port=metrics_port,
                                     registry=registry).start()
    log.info("service started", service=service.name,
             health=f"http://{metrics_host}:{server.port}/healthz" if server else None)
    notify("READY=1")
    interval = watchdog_interval_s()
    watchdog = Watchdog(service.health, interval).start() if interval else None
    try:
        return service.run()
    finally:
        notify("STOPPING=1")
        if watchdog is not None:
            watchdog.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.stop()
        log.info("service stopped", service=service.name,
                 signal=signal.Signals(signals_seen[0]).name if signals_seen else None)
