"""docker-compose.yml end to end: the stack comes up from the locally built images (host
networking), a replay of demo data through it gives one row per chunk in its PostgreSQL,
and `down -v` leaves nothing of it behind.

Marked `compose`: `make test` runs it in the containers pass only (the Docker engine is
set up there; the local pass deselects it). Its own project name and free ports keep it
apart from every other test and from a stack a user runs. Skipped only where no Docker
engine or docker-compose is installed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from soundscape.settings import Settings

pytestmark = pytest.mark.compose
T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEMO_MINUTES = 1  # per station: 6 chunks of 10 s
STATIONS = ("compose-01", "compose-02")  # the replay service's archive folders
EXPECTED_CHUNKS = len(STATIONS) * DEMO_MINUTES * 6
LONG_RUNNING = ("kafka", "postgres", "worker", "sink", "clips", "drift", "web")
METRICS_PORTS = {"worker": "WORKER_METRICS_PORT", "sink": "SINK_METRICS_PORT",
                 "clips": "CLIPS_METRICS_PORT", "drift": "DRIFT_METRICS_PORT"}


def compose_command() -> list[str] | None:
    """Debian's docker-compose (v1), else the docker compose plugin (v2)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    return None


def wait_until(what: str, probe: Callable[[], T], done: Callable[[T], bool],
               timeout_s: float, every_s: float = 2.0) -> T:
    """Probe until done(answer); fail with the last answer, which says what was missing."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached in {timeout_s:.0f} s (last: {answer!r})")
        time.sleep(every_s)


@dataclass
class Stack:
    """One compose project: its name, the variables it runs with, its timings."""

    command: list[str]
    project: str
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout_s: float = 300,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, "-p", self.project, "-f", str(COMPOSE_FILE), *args],
            capture_output=True, text=True, timeout=timeout_s, cwd=ROOT,
            env={**os.environ, **self.env},
        )
        if check and result.returncode != 0:
            pytest.fail(f"`compose {' '.join(args)}` exited {result.returncode}:\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def _docker(self, *args: str) -> list[str]:
        out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        return out.split()

    def containers(self, service: str | None = None) -> list[str]:
        labels = [f"label=com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"label=com.docker.compose.service={service}")
        return self._docker("ps", "-a", "-q", *(a for lbl in labels for a in ("--filter", lbl)))

    def volumes(self) -> list[str]:
        return self._docker("volume", "ls", "-q", "--filter",
                            f"label=com.docker.compose.project={self.project}")

    def state(self, service: str) -> dict[str, Any]:
        """The service's container state (Status, ExitCode, Health ...); {} if none."""
        ids = self.containers(service)
        if not ids:
            return {}
        out = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", ids[0]],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return dict(json.loads(out))

    def health(self, service: str) -> dict[str, Any]:
        """GET /healthz of a project service (host networking: its port on loopback)."""
        url = f"http://127.0.0.1:{self.env[METRICS_PORTS[service]]}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return dict(json.load(answer))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return {"error": str(exc)}

    def postgres_url(self) -> str:
        return (f"postgresql://soundscape_reader:{self.env['SOUNDSCAPE_READER_PASSWORD']}"
                f"@127.0.0.1:{self.env['POSTGRES_PORT']}/soundscape")

    def down(self) -> None:
        self.compose("--profile", "demo", "down", "-v", "--remove-orphans", "-t", "30",
                     timeout_s=240)


@pytest.fixture
def stack(run_state_dir: Path) -> Iterator[Stack]:
    """The images (the project's rebuilt when the tree changed), and a project of its own;
    torn down whatever happens, with the services' logs printed for a failing test."""
    from soundscape.infra.images.builder import engine_running, ensure_images, start_engine
    from soundscape.infra.process import free_port

    command = compose_command()
    if command is None:
        pytest.skip("no docker-compose: `bash infra/setup.sh --docker` installs Debian's")
    if not (shutil.which("dockerd") or engine_running()):
        pytest.skip("no Docker engine: `bash infra/setup.sh --docker` installs docker.io")
    start_engine()
    settings = Settings(state_dir=run_state_dir)
    started = time.monotonic()
    images = ensure_images(settings, ["postgres", "kafka", "soundscape"])
    print(f"\nimages: {images}")
    names = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_STATIONS_PORT", "POSTGRES_PORT",
             "GRAFANA_PORT", "WEB_PORT",
             "GPU_WORKER_METRICS_PORT", *METRICS_PORTS.values())
    env = {name: str(free_port()) for name in names} | {
        "SOUNDSCAPE_IMAGE": settings.images.project_tag,
        "SOUNDSCAPE_KAFKA_IMAGE": settings.images.kafka_tag,
        "SOUNDSCAPE_POSTGRES_IMAGE": settings.images.postgres_tag,
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "SOUNDSCAPE_OWNER_PASSWORD": secrets.token_urlsafe(16),
        "SOUNDSCAPE_WRITER_PASSWORD": secrets.token_urlsafe(16),
        "SOUNDSCAPE_READER_PASSWORD": secrets.token_urlsafe(16),
        "SOUNDSCAPE_WEB_PASSWORD": secrets.token_urlsafe(16),
        "DEMO_MINUTES": str(DEMO_MINUTES),
        "ADMIN_OUT": str(run_state_dir / f"enrolled-{uuid.uuid4().hex[:8]}"),
    }
    running = Stack(command, f"soundscape-test-{uuid.uuid4().hex[:8]}", env)
    running.timings["images_s"] = time.monotonic() - started
    try:
        yield running
    finally:
        if running.containers():
            print(running.compose("logs", "--no-color", "--tail", "40",
                                  check=False, timeout_s=60).stdout[-12000:])
        running.down()


def test_compose_stack_replays_demo_data_into_its_postgres(stack: Stack) -> None:
    import psycopg

    started = time.monotonic()
    stack.compose("up", "-d", timeout_s=420)
    for one_shot in ("certs", "setup"):
        done = stack.state(one_shot)
        assert done.get("Status") == "exited" and done.get("ExitCode") == 0, (one_shot, done)

    wait_until("every long-running service healthy",
               lambda: {s: stack.state(s).get("Health", {}).get("Status") for s in LONG_RUNNING},
               lambda health: set(health.values()) == {"healthy"}, 240)
    stack.timings["up_s"] = time.monotonic() - started

    replay = stack.compose("--profile", "demo", "run", "--rm", "--no-deps", "-T", "replay",
                           timeout_s=300)
    summary = json.loads(replay.stdout[replay.stdout.index("\n{") + 1:])
    assert summary["chunks"] == EXPECTED_CHUNKS and summary["failed_deliveries"] == 0, summary
    stack.timings["replay_s"] = time.monotonic() - started - stack.timings["up_s"]

    def stored() -> int:
        with psycopg.connect(stack.postgres_url(), connect_timeout=10) as conn:
            return int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    wait_until(f"{EXPECTED_CHUNKS} chunks stored", stored, lambda n: n >= EXPECTED_CHUNKS, 300)
    stack.timings["stored_s"] = time.monotonic() - started
    with psycopg.connect(stack.postgres_url(), connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT station_id, count(*), count(DISTINCT chunk_id), min(chunk_start),"
            " max(chunk_start), bool_and(source = 'replay'), sum(detection_count)"
            " FROM chunks GROUP BY station_id ORDER BY station_id").fetchall()
        detections = conn.execute("SELECT count(*) FROM detections d JOIN chunks c"
                                  " USING (chunk_start, chunk_id)").fetchone()[0]
    per_station = EXPECTED_CHUNKS // len(STATIONS)
    assert [r[0] for r in rows] == list(STATIONS)
    for station, count, distinct, first, last, replayed, _ in rows:
        # exactly one row per replayed chunk, none twice, abutting 10 s chunks
        assert (count, distinct) == (per_station, per_station), station
        assert (last - first).total_seconds() == 10 * (per_station - 1), station
        assert replayed, station
    assert detections == sum(r[6] for r in rows) > 0

    # The drift checks read the same detections topic: every chunk once, still healthy.
    drift = wait_until("drift checks processed every chunk", lambda: stack.health("drift"),
                       # faust joins its group and recovers its tables first: on a
                       # loaded machine (images just built) that took over 120 s once
                       lambda h: h.get("processed", 0) >= EXPECTED_CHUNKS, 240)
    assert drift["processed"] == EXPECTED_CHUNKS and drift["healthy"], drift
    assert stack.state("drift").get("Health", {}).get("Status") == "healthy"
    sink = stack.health("sink")
    assert sink["healthy"] and sink["database"] == "up", sink
    # The clip keeper went through every result and kept the confident ones' audio.
    clips = wait_until("the clip keeper saw every result", lambda: stack.health("clips"),
                       lambda h: h.get("committed", 0) >= EXPECTED_CHUNKS, 120)
    with psycopg.connect(stack.postgres_url(), connect_timeout=10) as conn:
        kept = conn.execute("SELECT count(*) FROM clips WHERE evicted_at IS NULL").fetchone()[0]
    assert clips["healthy"] and kept == clips["kept_detection"] + clips["kept_negative"] > 0, clips
    # The web app serves the same data, as the web role.
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.env['WEB_PORT']}/api/v1/stations",
                                timeout=10) as answer:
        served = {s["station_id"] for s in json.load(answer)["stations"]}
    assert served >= set(STATIONS), served

    check_the_stack_is_secured(stack)

    # Down cleanly: every service stops on its own within the grace period (137 would be
    # the SIGKILL after it), then nothing of the project is left.
    started_down = time.monotonic()
    stack.compose("stop", "-t", "30", timeout_s=240)
    exits = {s: stack.state(s).get("ExitCode") for s in LONG_RUNNING}
    stack.timings["stop_s"] = time.monotonic() - started_down
    assert all(code in (0, 143) for code in exits.values()), exits
    stack.down()
    stack.timings["down_s"] = time.monotonic() - started_down
    assert stack.containers() == [] and stack.volumes() == []
    print(f"\ncompose timings: { {k: round(v, 1) for k, v in stack.timings.items()} }, "
          f"{EXPECTED_CHUNKS} chunks, {detections} detections, exit codes {exits}")


def check_the_stack_is_secured(stack: Stack) -> None:
    """A station enrolled through the admin service publishes heartbeats on the SASL_SSL
    listener as its own principal and may write no results; anonymous and wrong-password
    clients are refused there; PostgreSQL serves TLS under the deployment's CA."""
    import psycopg
    from confluent_kafka import KafkaError

    from kafka_probe import produce_error
    from soundscape.app.enrolment import read_bundle

    station = "compose-pi"
    added = stack.compose("--profile", "admin", "run", "--rm", "--no-deps", "-T", "admin",
                          "stations", "add", station, "--json", timeout_s=120)
    answer = json.loads(added.stdout[added.stdout.index("{"):])
    bundle = Path(stack.env["ADMIN_OUT"]) / Path(answer["bundle"]).name
    assert bundle.stat().st_mode & 0o077 == 0, oct(bundle.stat().st_mode)
    config, ca_pem = read_bundle(bundle)
    ca = bundle.with_name("ca.pem")
    ca.write_bytes(ca_pem)
    kafka = config["kafka"]
    assert kafka["bootstrap_servers"] == f"127.0.0.1:{stack.env['KAFKA_STATIONS_PORT']}"
    client = {"bootstrap.servers": kafka["bootstrap_servers"], "security.protocol": "SASL_SSL",
              "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": station,
              "sasl.password": kafka["sasl_password"], "ssl.ca.location": str(ca)}
    topics = Settings().topics
    assert produce_error(client, topics.heartbeats) is None
    forged = produce_error(client, topics.detections, timeout_s=8)
    assert forged is not None and forged.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, forged
    wrong = produce_error(client | {"sasl.password": "guessed"}, topics.heartbeats, timeout_s=6)
    assert wrong is not None and wrong.code() in (KafkaError._AUTHENTICATION,
                                                  KafkaError._MSG_TIMED_OUT), wrong
    anonymous = {"bootstrap.servers": kafka["bootstrap_servers"]}
    assert produce_error(anonymous, topics.heartbeats, timeout_s=6) is not None

    verified = f"{stack.postgres_url()}?sslmode=verify-full&sslrootcert={ca}"
    with psycopg.connect(verified, connect_timeout=10) as conn:
        tls = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                           "WHERE pid = pg_backend_pid()").fetchone()
        keys = conn.execute("SELECT count(*) FROM signing_keys WHERE signer = %s",
                            (station,)).fetchone()[0]
    assert tls[0] is True and tls[1].startswith("TLSv1."), tls
    assert keys == 1  # its chunk-signing key is registered for the workers to check
    print(f"\ncompose security: station {station} on {kafka['bootstrap_servers']} (SASL_SSL), "
          f"PostgreSQL {tls[1]}")
