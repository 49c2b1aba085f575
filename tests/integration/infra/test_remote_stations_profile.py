"""The remote-stations profile (`security.profile=remote-stations`) started the way an
operator starts it: no listener takes an anonymous client, the operator's commands need
the admin password kept 0600, and the demo pipeline and the drift stream run with every
local service as a principal of its own role."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from soundscape.errors import ServiceError
from soundscape.infra import stack
from soundscape.kafka_clients import admin_config, consumer_config
from soundscape.local_services import (
    as_local_service,
    kafka_credentials_file,
    local_kafka_address,
)
from soundscape.messages import DriftReport, parse
from soundscape.settings import Settings, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


@pytest.fixture(scope="module")
def remote(run_state_dir: Path) -> Iterator[Settings]:
    """A broker and a database of this module's own, in the remote-stations profile."""
    settings = Settings(state_dir=run_state_dir / "remote-stations",
                        security={"profile": "remote-stations"})
    try:
        report = stack.up(settings)
        assert report["principals"] == ["worker.local", "sink.local", "replay.local",
                                        "drift.local", "clips.local", "notify.local"]
        yield settings
    finally:
        stack.down(settings)


def _refused(config: dict) -> str:
    """Why listing the topics fails (the test fails if it succeeds)."""
    errors: list[KafkaError] = []
    admin = AdminClient(config | {"error_cb": errors.append, "socket.timeout.ms": 5000,
                                  "logger": logging.getLogger("refused-client")})
    try:
        admin.list_topics(timeout=8)
    except Exception as exc:  # noqa: BLE001 - KafkaException: the refusal we want
        admin.poll(1)  # serves error_cb: why the connection was refused
        return str(exc) + " " + " ".join(e.str() for e in errors)
    raise AssertionError(f"{config.get('sasl.username', 'anonymous')} listed the topics")


def test_no_listener_takes_an_anonymous_or_wrong_password_client(remote: Settings) -> None:
    state = stack.status(remote)
    kafka = [entry for entry in state["listeners"] if entry["service"].startswith("kafka")]
    assert kafka and not any(entry["auth"].startswith("PLAINTEXT") for entry in kafka)
    loopback = local_kafka_address(remote)
    assert loopback is not None
    port = int(loopback.rsplit(":", 1)[1])
    controller = next(e["address"] for e in kafka if e["service"] == "kafka controller")
    stations = next(e["address"] for e in kafka if e["service"] == "kafka stations")
    for address in (loopback, controller):
        _refused({"bootstrap.servers": address})  # anonymous PLAINTEXT
    wrong = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
             "sasl.username": "admin", "sasl.password": "guessed"}
    assert "uthentication" in _refused({"bootstrap.servers": loopback} | wrong)
    _refused({"bootstrap.servers": stations})
    # The operator's commands work with the password; it and the broker's files are 0600.
    assert AdminClient(admin_config(remote)).list_topics(timeout=10).brokers
    credentials = kafka_credentials_file(remote)
    for path in (credentials, remote.state_dir / "kafka" / "server.properties"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((remote.state_dir / "kafka").stat().st_mode) == 0o700
    # An account that cannot read the password gets one clear error, not a connection.
    blind = remote.model_copy(update={"state_dir": remote.state_dir.parent / "elsewhere"})
    (blind.state_dir / "kafka").mkdir(parents=True)
    (blind.state_dir / "kafka" / "state.json").write_text(f'{{"port": {port}}}')
    with pytest.raises(ServiceError, match="holds no password for 'admin'"):
        admin_config(blind)


def test_a_local_service_principal_has_its_role_rights_only(remote: Settings) -> None:
    worker = as_local_service(remote, "worker")
    assert worker.kafka.sasl_username == "worker.local"
    config = admin_config(worker) | {"message.timeout.ms": 8000}
    reports: list[KafkaError | None] = []
    producer = Producer(config)
    producer.produce(remote.topics.heartbeats, b"x", key=b"x",
                     on_delivery=lambda err, _msg: reports.append(err))
    producer.flush(15)
    assert reports and reports[0] is not None
    assert reports[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_demo_runs_with_every_local_service_as_its_own_principal(remote: Settings) -> None:
    from soundscape.app.demo import run_demo

    report = run_demo(remote, stations=2, minutes=1, progress=False, timeout_s=300)
    assert report.chunks_stored == report.chunks_expected == 12
    assert report.dead_lettered == 0


def test_the_drift_stream_runs_as_its_own_principal(remote: Settings, tmp_path: Path) -> None:
    """faust creates its state topics under its app id and commits in transactions: the
    drift role's prefixed rights are enough, and its reports reach the drift topic."""
    from soundscape.processors.drift import scenarios as sc
    from soundscape.processors.drift.publish import publish

    drift = remote.drift.model_copy(update={
        "window_s": 600, "hop_s": 300, "reference_windows": 3, "grace_s": 30,
        "data_dir": tmp_path / "drift", "app_id": "drift-remote"})
    settings = remote.model_copy(update={"drift": drift})
    stack.up(settings)  # as an operator would after changing the app id: its rights follow
    start_ns = 1_780_000_000 * 1_000_000_000
    published = publish(settings, settings.topics.detections,
                         sc.station_stream("steady", start_ns, sc.steady(60)))
    assert published > 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
    env |= settings_env(settings) | {"SOUNDSCAPE_LOG_FORMAT": "json"}
    log = tmp_path / "drift.log"
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "soundscape", "drift", "run"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        reports = _drift_reports(settings, child, "steady", timeout_s=120)
    finally:
        child.terminate()
        child.wait(60)
    assert reports, log.read_text()[-3000:]
    assert "steady" in {r.station_id for r in reports}
    assert "AUTHORIZATION_FAILED" not in log.read_text()


def _drift_reports(settings: Settings, child: subprocess.Popen[bytes], station: str,
                   timeout_s: float) -> list[DriftReport]:
    """Reports on the drift topic until one for `station` came (the topic also holds the
    demo test's stations, which the stream checks too)."""
    consumer = Consumer(consumer_config(settings, f"remote-drift-{time.monotonic_ns()}"))
    consumer.subscribe([settings.topics.drift])
    found: list[DriftReport] = []
    deadline = time.monotonic() + timeout_s
    try:
        while (station not in {r.station_id for r in found} and time.monotonic() < deadline
               and child.poll() is None):
            for message in consumer.consume(100, 1.0):
                if message.error() is None:
                    found.append(parse(DriftReport, message.value()))
    finally:
        consumer.close()
    return found


def test_a_running_broker_says_which_profile_it_runs(remote: Settings) -> None:
    single = remote.model_copy(update={"security": remote.security.model_copy(
        update={"profile": "single-host"})})
    with pytest.raises(ServiceError, match="runs the remote-stations profile") as caught:
        stack.up(single, postgres=False)
    assert "infra down" in (caught.value.hint or "")
