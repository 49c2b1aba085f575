"""What the local services share: ports, pid files, tools on PATH, state files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from soundscape.errors import ServiceError
from soundscape.local_services import read_state
from soundscape.observability import free_port as free_port  # re-exported: tests and infra use it here


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not installed or not on PATH", hint=install_hint)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_hard(pid: int) -> None:
    """SIGKILL and wait until it is gone (a crash, for fault tests and `infra kill-broker`)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for(lambda: not pid_alive(pid), 10, 0.05)


def terminate(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait, then SIGKILL; True if the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if wait_for(lambda: not pid_alive(pid), timeout_s, interval_s=0.2):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return wait_for(lambda: not pid_alive(pid), 10.0, interval_s=0.1)


def terminate_all(pids: list[int], timeout_s: float = 30.0) -> bool:
    """SIGTERM to every one at once, wait, then SIGKILL what is left; True if all are gone.
    (Cluster nodes stopped one after another would leave the last without a quorum to
    hand its partitions to, and it would wait out its shutdown timeout.)"""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if wait_for(lambda: not any(pid_alive(p) for p in pids), timeout_s, interval_s=0.2):
        return True
    for pid in pids:
        if pid_alive(pid):
            kill_hard(pid)
    return not any(pid_alive(p) for p in pids)


def wait_for(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


read_json = read_state  # one reader of state files: soundscape.local_services


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    # Created with its mode, so a file of passwords is never readable by others, even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.chmod(mode)  # the umask may have taken bits away from a public file
    tmp.replace(path)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def choose_port(configured: int, remembered: int | None, host: str, what: str) -> int:
    """The configured port, else the one used last time if still free, else a free one."""
    if configured:
        if not port_bindable(configured, host):
            raise ServiceError(
                f"{what} port {configured} on {host} is already taken by another process",
                hint=f"free it, or choose another port (0 picks a free one) for {what}",
            )
        return configured
    if remembered and port_bindable(remembered, host):
        return remembered
    return free_port(host)
