"""`soundscape infra up | status | down` as a user runs them, in a state folder of their own,
and the failures a user meets: a taken port, no Java, a corrupt state folder, a bad version."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundscape.infra.process import pid_alive


def soundscape(state: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full_env = os.environ | {"SOUNDSCAPE_STATE_DIR": str(state), "SOUNDSCAPE_LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "soundscape", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env | (env or {}),
    )


@pytest.fixture
def state(run_state_dir: Path) -> Iterator[Path]:
    path = run_state_dir / f"cli-{uuid.uuid4().hex[:6]}"
    yield path
    soundscape(path, "infra", "down")
    shutil.rmtree(path, ignore_errors=True)


def _processes_mentioning(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in cmdline and pid_alive(int(proc.name)):
                found.append(cmdline)
    return found


def test_up_status_down_lifecycle(state: Path) -> None:
    first = soundscape(state, "infra", "up")
    assert first.returncode == 0, first.stderr
    print("\n" + first.stdout)
    assert "postgres: started in" in first.stdout and "kafka:    started in" in first.stdout

    again = soundscape(state, "infra", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 2

    status = soundscape(state, "infra", "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["kafka"]["running"] and info["postgres"]["running"]
    host, port = info["bootstrap_servers"].rsplit(":", 1)
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    assert info["database_url"].startswith("postgresql://soundscape_writer:***@")
    listening = {entry["service"]: entry for entry in info["listeners"]}
    assert set(listening) == {"kafka", "kafka controller", "kafka stations", "postgres",
                              "postgres socket"}
    assert "SASL_SSL" in listening["kafka stations"]["auth"]
    assert all(e["address"].startswith(("127.0.0.1:", "/")) for e in info["listeners"])
    # Passwords only when asked for, and then the real, working one.
    secret = json.loads(soundscape(state, "infra", "status", "--json", "--show-secrets").stdout)
    creds = json.loads((state / "postgres" / "credentials.json").read_text())
    assert creds["writer_password"] in secret["database_url"]
    assert creds["reader_password"] in secret["database_url_readonly"]
    assert not any(p in status.stdout for p in creds.values())

    down = soundscape(state, "infra", "down")
    assert down.returncode == 0, down.stderr
    assert "kafka: stopped" in down.stdout and "postgres: stopped" in down.stdout
    assert not _processes_mentioning(state)
    assert not (state / "postgres" / "data" / "postmaster.pid").exists()
    assert not (state / "kafka" / "kafka.pid").exists()
    assert soundscape(state, "infra", "status").returncode == 1
    assert "was not running" in soundscape(state, "infra", "down").stdout

    # Data survives a restart: the same cluster and broker come back.
    back = soundscape(state, "infra", "up")
    assert back.returncode == 0, back.stderr
    assert json.loads(soundscape(state, "infra", "status", "--json").stdout)["kafka"]["running"]


def test_taken_port_is_a_clear_error(state: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = soundscape(state, "infra", "up", "--no-postgres",
                            env={"SOUNDSCAPE_KAFKA__PORT": str(port)})
    assert result.returncode == 3
    assert f"Kafka port {port} on 127.0.0.1 is already taken" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_java_is_a_clear_error(state: Path) -> None:
    result = soundscape(state, "infra", "up", "--no-postgres",
                        env={"PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 3
    assert "`java` is not installed" in result.stderr and "hint:" in result.stderr


def test_corrupt_state_folder_is_a_clear_error(state: Path) -> None:
    (state / "kafka").mkdir(parents=True)
    (state / "kafka" / "state.json").write_text("{not json")
    result = soundscape(state, "infra", "up", "--no-postgres")
    assert result.returncode == 3
    assert "state.json is unreadable" in result.stderr and "infra reset" in result.stderr

    reset = soundscape(state, "infra", "reset", "--kafka", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert not (state / "kafka").exists()


def test_failed_jar_fetch_is_a_clear_error(state: Path, tmp_path: Path) -> None:
    result = soundscape(state, "infra", "up", "--no-postgres",
                        env={"SOUNDSCAPE_KAFKA__VERSION": "0.0.404",
                             "SOUNDSCAPE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 3
    assert "fetching Apache Kafka 0.0.404 jars from Maven Central failed" in result.stderr
    assert not (tmp_path / "cache" / "kafka-0.0.404").exists()
