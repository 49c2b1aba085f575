"""The web app as a background process of this machine, like Kafka and PostgreSQL:
`soundscape demo` leaves it running on the demo's data and prints its URL; `infra down`
stops it (soundscape.infra.stack); `infra status` lists its address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from soundscape.errors import ServiceError
from soundscape.infra import process
from soundscape.local_services import web_state_file
from soundscape.settings import Settings


def running_web(settings: Settings) -> dict[str, Any] | None:
    """The background web app's state when its process is alive, else None."""
    state = process.read_json(web_state_file(settings)) or {}
    pid = state.get("pid")
    if pid and process.pid_alive(int(pid)) and " web" in process.process_cmdline(int(pid)):
        return state
    return None


def ensure_web(settings: Settings, timeout_s: float = 30.0) -> str:
    """Start `soundscape web` detached unless it runs; its URL once /healthz answers."""
    state = running_web(settings)
    if state is not None:
        return _url(state)
    host = settings.web.host
    port = settings.web.port
    if process.port_in_use(port, host):  # something else has it: a free one instead
        port = process.free_port(host)
    folder = web_state_file(settings).parent
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "web.log"
    with log_file.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "soundscape", "web", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "SOUNDSCAPE_STATE_DIR": str(settings.state_dir)})
    state = {"pid": child.pid, "host": host, "port": port, "started_at": time.time()}
    process.write_json(web_state_file(settings), state)
    url = _url(state)

    def healthy() -> bool:
        if child.poll() is not None:
            return True  # exited: stop waiting, report below
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2) as answer:
                return bool(json.load(answer).get("healthy"))
        except OSError:
            return False

    process.wait_for(healthy, timeout_s, interval_s=0.3)
    if child.poll() is not None or running_web(settings) is None:
        raise ServiceError(f"the web app did not start:\n{process.tail(log_file)}",
                           hint=f"see {log_file}")
    return url


def _url(state: dict[str, Any]) -> str:
    return f"http://{state['host']}:{state['port']}/"
