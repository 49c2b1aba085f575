"""systemd's notify protocol, for services run as `Type=notify` units (the station's):
READY=1 once running, WATCHDOG=1 while healthy, STOPPING=1 on the way out.

A datagram to $NOTIFY_SOCKET, nothing more (sd_notify(3)); without that variable every
call is a no-op, so services behave the same outside systemd. Only a healthy service
pets the watchdog: one that hangs, or reports itself unhealthy, is restarted by systemd.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from soundscape.logs import get_logger

log = get_logger(__name__)


def notify(message: str) -> bool:
    """Send one notification; False when not run by systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("systemd notification not sent", message=message, error=str(exc))
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the unit's WatchdogSec (as sd_watchdog_enabled advises), or None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


class Watchdog:
    """Pets systemd's watchdog every half interval while `health()` says healthy."""

    def __init__(self, health: Callable[[], dict[str, Any]], interval_s: float) -> None:
        self._health = health
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self.pets = 0

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                healthy = bool(self._health().get("healthy", True))
            except Exception:  # noqa: BLE001 - a health check that fails is unhealthy
                healthy = False
            if healthy and notify("WATCHDOG=1"):
                self.pets += 1
