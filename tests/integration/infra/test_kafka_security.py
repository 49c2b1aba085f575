"""The local broker as an attacker and a broken station meet it: the stations' SASL_SSL
listener refuses anonymous and wrong-password clients, a station's principal may write
audio and heartbeats and nothing else, revoking a station stops its next publish, and a
station enrolled with `stations add` + `stations install` publishes through it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from soundscape.app import enrolment
from soundscape.app.enrolment import add_station, install_bundle, read_bundle
from soundscape.chunk_signing import SIGNER_HEADER, verify
from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope
from soundscape.errors import UserError
from soundscape.infra.certs import cert_paths
from soundscape.infra.kafka.broker import KafkaBroker
from soundscape.infra.kafka.principals import acls_of
from soundscape.settings import Settings
from soundscape.sinks.signing_keys import DatabaseSigningKeys
from kafka_probe import produce_error
from topic_reader import read_messages

pytestmark = [pytest.mark.integration, pytest.mark.local_only]


def _station_config(settings: Settings, user: str, password: str, **extra: Any) -> dict:
    return {
        "bootstrap.servers": KafkaBroker(settings).stations_address(),
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user, "sasl.password": password,
        "ssl.ca.location": str(cert_paths(settings).ca_cert),
    } | extra


@pytest.fixture
def kafka_settings(kafka_settings: Settings, db_settings: Settings) -> Settings:
    """This test's topics and a migrated database of its own (signing keys live there)."""
    from soundscape.sinks import migrate

    combined = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(combined)
    return combined


@pytest.fixture
def station(kafka_settings: Settings, tmp_path: Path) -> tuple[str, str, Path]:
    """An enrolled station: (id, password, bundle)."""
    station_id = f"sec-{uuid.uuid4().hex[:8]}"
    done = add_station(kafka_settings, station_id, tmp_path / "bundle.tar.gz")
    config, _ca = read_bundle(done.bundle)
    return station_id, config["kafka"]["sasl_password"], done.bundle


def test_anonymous_and_wrong_password_clients_are_refused(
    kafka_settings: Settings, station: tuple[str, str, Path]
) -> None:
    station_id, password, _ = station
    audio = kafka_settings.topics.audio
    good = _station_config(kafka_settings, station_id, password)
    assert produce_error(good, audio) is None  # the control: the right password gets in

    wrong = produce_error(good | {"sasl.password": password + "x"}, audio, timeout_s=6)
    assert wrong is not None and wrong.code() in (KafkaError._AUTHENTICATION,
                                                  KafkaError._MSG_TIMED_OUT), wrong
    unknown = produce_error(good | {"sasl.username": "nobody-" + station_id}, audio, timeout_s=6)
    assert unknown is not None
    anonymous = {k: v for k, v in good.items() if not k.startswith("sasl.")}
    assert produce_error(anonymous | {"security.protocol": "SSL"}, audio, timeout_s=6) is not None
    plaintext = {"bootstrap.servers": good["bootstrap.servers"]}
    assert produce_error(plaintext, audio, timeout_s=6) is not None


def test_a_station_writes_audio_heartbeats_and_edge_results_and_nothing_else(
    kafka_settings: Settings, station: tuple[str, str, Path]
) -> None:
    station_id, password, _ = station
    config = _station_config(kafka_settings, station_id, password)
    topics = kafka_settings.topics
    assert produce_error(config, topics.audio) is None
    assert produce_error(config, topics.heartbeats) is None
    assert produce_error(config, topics.edge_detections) is None  # its own scores
    for forbidden in (topics.detections, topics.audio_dlq, topics.drift, topics.results_dlq,
                      topics.shadow_detections):
        error = produce_error(config, forbidden, timeout_s=8)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (
            forbidden, error)

    consumer = Consumer(config | {"group.id": f"steal-{station_id}",
                                  "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.audio])
    errors = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not errors:
        message = consumer.poll(0.5)
        if message is not None:
            assert message.error() is not None, "a station read a message"
            errors.append(message.error().code())
    consumer.close()
    assert errors and errors[0] in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                    KafkaError.TOPIC_AUTHORIZATION_FAILED)

    admin = AdminClient({k: v for k, v in config.items() if k != "enable.idempotence"})
    made = admin.create_topics([NewTopic(f"evil-{station_id}", 1, 1)], request_timeout=15)
    with pytest.raises(Exception, match="AUTHORIZATION"):
        made[f"evil-{station_id}"].result(timeout=30)
    gone = admin.delete_topics([topics.audio], request_timeout=15)
    with pytest.raises(Exception, match="AUTHORIZATION"):
        gone[topics.audio].result(timeout=30)
    assert {b.name for b in acls_of(kafka_settings, station_id)} == {
        topics.audio, topics.heartbeats, topics.edge_detections}


def test_a_revoked_station_cannot_publish_even_on_an_open_connection(
    kafka_settings: Settings, station: tuple[str, str, Path]
) -> None:
    station_id, password, _ = station
    config = _station_config(kafka_settings, station_id, password)
    producer = Producer(config | {"message.timeout.ms": 10_000, "enable.idempotence": True})
    reports: list[KafkaError | None] = []
    topic = kafka_settings.topics.audio
    producer.produce(topic, b"before", on_delivery=lambda e, _m: reports.append(e))
    producer.flush(20)
    assert reports == [None]

    assert enrolment.revoke_station(kafka_settings, station_id) == {
        "credentials": 1, "acls": 3, "signing_key": 1}  # audio, heartbeats, edge results
    time.sleep(1)  # the authorizer's metadata reaches the broker's request path
    producer.produce(topic, b"after", on_delivery=lambda e, _m: reports.append(e))
    producer.flush(20)
    assert reports[1] is not None and reports[1].code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._MSG_TIMED_OUT), reports
    assert produce_error(config, topic, timeout_s=6) is not None  # and no new connection
    assert enrolment.revoke_station(kafka_settings, station_id) == {
        "credentials": 0, "acls": 0, "signing_key": 0}
    keys = DatabaseSigningKeys(kafka_settings, ttl_s=30)
    assert keys.lookup(station_id).revoked  # kept, marked: what it signed is refused


def _installed_env(kafka_settings: Settings, bundle: Path, tmp_path: Path) -> dict[str, str]:
    """`stations install` into tmp_path; the environment its systemd unit would give."""
    installed = install_bundle(bundle, tmp_path / "etc", tmp_path / "systemd",
                               state_dir=tmp_path / "state")
    config = Path(installed["config"])
    assert config.stat().st_mode & 0o777 == 0o600
    unit = Path(installed["unit"]).read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=always",
                 f"Environment=SOUNDSCAPE_CONFIG={config}", "-m soundscape station"):
        assert line in unit
    return {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")} | {
        "SOUNDSCAPE_CONFIG": str(config), "SOUNDSCAPE_LOG_FORMAT": "json",
        "SOUNDSCAPE_TOPICS__AUDIO": kafka_settings.topics.audio,
        "SOUNDSCAPE_TOPICS__HEARTBEATS": kafka_settings.topics.heartbeats,
    }


def _arrived_signed(kafka_settings: Settings, station_id: str, count: int) -> list:
    """The station's chunks, read back through the project's own listener, each signed on
    the Pi with the key from its bundle and checked against the registered one."""
    messages = read_messages(kafka_settings, kafka_settings.topics.audio, expected=count)
    assert len(messages) == count
    assert {m.key().decode() for m in messages} == {station_id}
    keys = DatabaseSigningKeys(kafka_settings, ttl_s=30)
    envelopes = []
    for message in messages:
        envelope = ChunkEnvelope.from_headers(message.headers(), message.value(), message.key())
        assert dict(envelope.extra)[SIGNER_HEADER] == station_id.encode()
        assert verify(envelope, keys.lookup, require=True) is None
        envelopes.append((envelope, message.value()))
    return envelopes


def test_an_enrolled_and_installed_station_publishes_over_sasl_ssl(
    kafka_settings: Settings, station: tuple[str, str, Path], tmp_path: Path
) -> None:
    """The two commands of a new station, then `soundscape station` under that config."""
    station_id, _password, bundle = station
    env = _installed_env(kafka_settings, bundle, tmp_path)
    run = subprocess.run([sys.executable, "-m", "soundscape", "station", "--source",
                          "synthetic", "--speed", "0", "--chunks", "3", "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert (report["station_id"], report["chunks_acked"], report["spool_depth"]) == (
        station_id, 3, 0)
    _arrived_signed(kafka_settings, station_id, 3)


def test_an_installed_station_records_its_microphone_over_sasl_ssl(
    kafka_settings: Settings, station: tuple[str, str, Path], tmp_path: Path
) -> None:
    """The PulseAudio path with security on: a 1 kHz tone played into a real capture
    device, recorded by the enrolled station and published over TLS + SCRAM, signed."""
    import numpy as np
    import soundfile as sf
    from pulse_device import pulse_device

    from soundscape.audio_codec import decode

    station_id, _password, bundle = station
    tone = tmp_path / "tone.wav"
    t = np.arange(48_000 * 30) / 48_000
    sf.write(tone, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 48_000)
    with pulse_device(tmp_path) as pulse:
        env = _installed_env(kafka_settings, bundle, tmp_path) | pulse
        player = subprocess.Popen(["paplay", "--device=mic", str(tone)], env=env)
        try:
            run = subprocess.run([sys.executable, "-m", "soundscape", "station", "--source",
                                  "mic", "--device", "pulse", "--capture-rate", "48000",
                                  "--chunks", "1", "--json"],
                                 env=env, capture_output=True, text=True, timeout=90)
        finally:
            player.terminate()
            player.wait(timeout=10)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert (report["chunks_acked"], report["overruns"]) == (1, 0)
    ((envelope, payload),) = _arrived_signed(kafka_settings, station_id, 1)
    assert (envelope.source, envelope.sample_rate) == ("live", 32_000)
    mono = decode(payload, envelope.codec).mono()
    spectrum = np.abs(np.fft.rfft(mono[-32_000 * 5:]))
    assert abs(np.argmax(spectrum) / 5 - 1000) <= 2, "the tone did not come through"


def test_a_bundle_that_is_not_ours_is_refused(tmp_path: Path,
                                              station: tuple[str, str, Path]) -> None:
    def tar_with(*entries: tuple[str, bytes]) -> Path:
        path = tmp_path / f"bad-{len(list(tmp_path.iterdir()))}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    _, _, good = station
    config, ca = read_bundle(good)
    toml = (b'[kafka]\nbootstrap_servers = "x:1"\n[station]\nstation_id = "a"\n')
    cases = {
        "not a tar": tmp_path / "plain.tar.gz",
        "path escape": tar_with(("soundscape.toml", toml), ("ca.pem", ca),
                                ("../../etc/cron.d/evil", b"* * * * * root id")),
        "no CA": tar_with(("soundscape.toml", toml)),
        "unknown setting": tar_with(("soundscape.toml", b"[kafka]\nevil = 1\n"), ("ca.pem", ca)),
        "not a certificate": tar_with(("soundscape.toml", toml), ("ca.pem", b"hello")),
    }
    cases["not a tar"].write_bytes(b"garbage")
    for name, path in cases.items():
        with pytest.raises(UserError):
            install_bundle(path, tmp_path / f"etc-{name}", None)
        assert not (tmp_path / "etc" / "cron.d").exists(), name
    assert config["station"]["station_id"].startswith("sec-")


def test_bench_transport_compares_both_listeners_and_leaves_nothing(services: Settings) -> None:
    from soundscape.app.transport_bench import bench_transport
    from soundscape.infra.kafka.principals import users_with_credentials

    before = set(users_with_credentials(services))
    figures = bench_transport(services, chunks=6, rounds=1)
    assert figures["plaintext_chunks_per_s"] > 0 and figures["sasl_ssl_chunks_per_s"] > 0
    # The cost is the two rates measured in this run (rounded figures: a loose match).
    ratio = figures["plaintext_chunks_per_s"] / figures["sasl_ssl_chunks_per_s"]
    assert figures["sasl_ssl_cost_percent"] == pytest.approx((ratio - 1) * 100, rel=0.05, abs=1)
    assert set(users_with_credentials(services)) == before
    topics = AdminClient({"bootstrap.servers": KafkaBroker(services).bootstrap_address()}) \
        .list_topics(timeout=30).topics
    assert not [t for t in topics if ".bench-" in t]


def test_a_bundle_never_names_an_address_no_station_can_dial(kafka_settings: Settings,
                                                            tmp_path: Path) -> None:
    wildcard = kafka_settings.model_copy(update={"kafka": kafka_settings.kafka.model_copy(
        update={"stations_host": "0.0.0.0"})})
    with pytest.raises(UserError, match="cannot dial") as caught:
        add_station(wildcard, "sec-wildcard", tmp_path / "b.tar.gz")
    assert "STATIONS_ADVERTISED_HOST" in (caught.value.hint or "")
    assert not (tmp_path / "b.tar.gz").exists()


def _service_settings(settings: Settings, bundle: Path) -> Settings:
    """The settings a service gets from its unpacked bundle (the CA beside its config)."""
    config, ca_pem = read_bundle_any(bundle)
    ca = bundle.with_suffix(".ca.pem")
    ca.write_bytes(ca_pem)
    kafka = config["kafka"] | {"ssl_ca_location": ca}
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update=kafka | {
        "sasl_password": SecretStr(kafka["sasl_password"])})})


def read_bundle_any(bundle: Path) -> tuple[dict, bytes]:
    with tarfile.open(bundle) as tar:
        config = tar.extractfile("soundscape.toml").read().decode()  # type: ignore[union-attr]
        ca = tar.extractfile("ca.pem").read()  # type: ignore[union-attr]
    import tomllib

    return tomllib.loads(config), ca


def test_only_workers_write_detections_and_services_run_on_their_own_rights(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A worker and a sink on other machines, each with `services add`'s principal over
    SASL_SSL: the worker scores (transactions, its group) and the sink stores; neither a
    sink, a replay nor a station principal can write detections; a worker cannot read
    results or write what is not its own."""
    from soundscape.app.bundle_registration import register
    from soundscape.chunk_publisher import ChunkPublisher
    from soundscape.models import DEMO_BUNDLE
    from soundscape.processors.scoring import ModelScorer
    from soundscape.processors.worker import InferenceWorker
    from soundscape.sinks.service import SinkService
    from soundscape.synthetic.chunks import generated_chunks

    run = uuid.uuid4().hex[:6]
    bundles = {role: enrolment.add_service(kafka_settings, role, f"{role[:2]}{run}",
                                           tmp_path / f"{role}.tar.gz").bundle
               for role in ("worker", "sink", "replay")}
    assert oct(bundles["worker"].stat().st_mode & 0o777) == "0o600"
    as_worker, as_sink, as_replay = (_service_settings(kafka_settings, bundles[r])
                                     for r in ("worker", "sink", "replay"))
    topics = kafka_settings.topics

    def client(settings: Settings) -> dict:
        k = settings.kafka
        return _station_config(kafka_settings, k.sasl_username,
                               k.sasl_password.get_secret_value())  # type: ignore[union-attr]

    # Refused by the broker: results from anyone but a worker, and a worker's strays.
    for who, topic in ((as_sink, topics.detections), (as_replay, topics.detections),
                       (as_worker, topics.results_dlq), (as_worker, topics.heartbeats),
                       (as_worker, topics.drift)):
        error = produce_error(client(who), topic, timeout_s=8)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (
            who.kafka.sasl_username, topic, error)
    assert produce_error(client(as_replay), topics.audio) is None
    consumer = Consumer(client(as_worker) | {"group.id": kafka_settings.worker.group_id,
                                             "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.detections])
    deadline, refused = time.monotonic() + 15, None
    while time.monotonic() < deadline and refused is None:
        message = consumer.poll(0.5)
        if message is not None:
            assert message.error() is not None, "a worker read a result"
            refused = message.error().code()
    consumer.close()
    assert refused == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # The real services, each on its own principal, through the TLS listener.
    register(kafka_settings, DEMO_BUNDLE)
    publisher = ChunkPublisher(kafka_settings)
    start = (time.time_ns() // 10**9 - 3600) // 10 * 10 * 10**9
    for envelope, payload in generated_chunks(6, 2, start):
        publisher.publish(envelope, payload)
    publisher.flush()
    worker = InferenceWorker(as_worker, ModelScorer.load(Path(DEMO_BUNDLE), as_worker),
                             worker_id="tls-1", signatures=None)
    sink = SinkService(as_sink)
    import threading

    stop = threading.Event()
    threads = [threading.Thread(target=worker.run, args=(stop,)),
               threading.Thread(target=sink.run)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while sink.stats.stored < 6:
            assert time.monotonic() < deadline, (worker.stats, sink.health())
            time.sleep(0.2)
    finally:
        stop.set()
        sink.request_stop()
        for thread in threads:
            thread.join(60)
    assert worker.stats.scored == 6 and sink.stats.dead_lettered == 0

    enrolment.revoke_service(kafka_settings, "worker", f"wo{run}")
    error = produce_error(client(as_worker), topics.detections, timeout_s=8)
    assert error is not None


def test_the_secure_pipeline_benchmark_runs_both_ways_and_cleans_up(
    kafka_settings: Settings,
) -> None:
    """A small `bench secure-pipeline`: the worker and sink drain signed chunks over
    SASL_SSL as principals of their own, and plain ones over loopback; its scratch
    principals, topics and schema are gone afterwards."""
    from soundscape.app.secure_pipeline_bench import bench_secure_pipeline
    from soundscape.infra.kafka.principals import users_with_credentials
    from soundscape.models import DEMO_BUNDLE

    users_before = set(users_with_credentials(kafka_settings))
    figures = bench_secure_pipeline(kafka_settings, Path(DEMO_BUNDLE), chunks=24, rounds=1,
                                    progress=False)
    assert figures["plain_chunks_per_s"] > 0 and figures["secure_chunks_per_s"] > 0
    assert len(figures["seconds"]["plain"]) == len(figures["seconds"]["secure"]) == 1
    assert set(users_with_credentials(kafka_settings)) == users_before
    with psycopg.connect(database_url(kafka_settings)) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.schemata "
                            "WHERE schema_name LIKE 'bench_%'").fetchone()[0] == 0
