"""The services of a chaos run as child processes, kept running the way systemd would.

Each child is a real `soundscape` command with its own log file and health port. A child
killed on purpose stays down for the fault's pause; one that exits by itself (a crash, or
a start while PostgreSQL is down) is started again after a second and counted, as a
supervisor's `Restart=always` would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundscape.infra.process import free_port
from soundscape.logs import get_logger

log = get_logger(__name__)

RESTART_AFTER_S = 1.0


def base_env(settings_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its SOUNDSCAPE_* settings, plus the run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
    if os.environ.get("SOUNDSCAPE_CACHE_DIR"):
        env["SOUNDSCAPE_CACHE_DIR"] = os.environ["SOUNDSCAPE_CACHE_DIR"]
    return env | settings_env | {"SOUNDSCAPE_LOG_FORMAT": "json"}


def get_health(port: int, timeout_s: float = 2.0) -> dict[str, Any]:
    """/healthz as a dict; {} while the process is not serving (503 bodies count)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                    timeout=timeout_s) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read()))
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}


@dataclass
class Child:
    """One service process: `soundscape <args>`, restarted if it dies unasked."""

    name: str
    kind: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    wanted: bool = False
    unexpected_exits: list[int] = field(default_factory=list)
    starts: int = 0

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        out = (self.log_dir / f"{self.name}.log").open("ab")
        env = self.env | {"SOUNDSCAPE_METRICS_PORT": str(self.port)}
        self.process = subprocess.Popen([sys.executable, "-m", "soundscape", *self.args],
                                        env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        out.close()
        self.wanted = True

    def kill(self) -> None:
        """kill -9, as a power cut or the OOM killer would; stays down until start()."""
        self.wanted = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (the service finishes what it holds), then SIGKILL after the timeout."""
        self.wanted = False
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time; killed", child=self.name)
                self.process.kill()
                return self.process.wait(30)
        return self.process.returncode

    def health(self) -> dict[str, Any]:
        return get_health(self.port) if self.running else {}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def supervise(self) -> None:
        """Start again a child that exited by itself (called every second)."""
        if self.wanted and self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            self.unexpected_exits.append(code)
            log.warning("child exited by itself; starting it again", child=self.name, code=code)
            time.sleep(RESTART_AFTER_S)
            if self.wanted:
                self.start()

    def log_tail(self, chars: int = 2000) -> str:
        path = self.log_dir / f"{self.name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class Supervisor:
    """Watches the children on a thread of its own."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-supervisor", daemon=True)
        self.lock = threading.Lock()  # held while a fault changes a child

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            for child in self.children:
                with self.lock:
                    child.supervise()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
