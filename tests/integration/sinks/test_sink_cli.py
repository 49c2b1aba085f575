"""The commands as people run them: `soundscape db ...`, `soundscape sink` as a service
(health, metrics, structured logs, clean stop on SIGTERM), `soundscape bench sink`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sink_testkit import ResultPublisher, table_counts

from soundscape.infra.process import free_port
from soundscape.settings import Settings
from soundscape.sinks.sample_results import NS, detection_stream

SOUNDSCAPE = [sys.executable, "-m", "soundscape"]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a `soundscape` process use this test's services."""
    topics, pg = settings.topics, settings.postgres
    env = dict(os.environ) | {
        "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
        "SOUNDSCAPE_POSTGRES__DATABASE": pg.database,
        "SOUNDSCAPE_TOPICS__DETECTIONS": topics.detections,
        "SOUNDSCAPE_TOPICS__HEARTBEATS": topics.heartbeats,
        "SOUNDSCAPE_TOPICS__DRIFT": topics.drift,
        "SOUNDSCAPE_TOPICS__RESULTS_DLQ": topics.results_dlq,
        "SOUNDSCAPE_LOG_FORMAT": "json",
    }
    # Services given by URL (the test's own database, or the containers backend).
    for name, value in (("POSTGRES__URL", pg.url), ("POSTGRES__READER_URL", pg.reader_url),
                        ("POSTGRES__OWNER_URL", pg.owner_url)):
        if value is not None:
            env[f"SOUNDSCAPE_{name}"] = value.get_secret_value()
    if settings.kafka.bootstrap_servers:
        env["SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    return env | extra


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SOUNDSCAPE, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_db_commands_migrate_report_and_refuse_clearly(db_settings: Settings) -> None:
    env = env_for(db_settings)
    status = run_cli(env, "db", "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["pending"] == ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011"]
    upgrade = run_cli(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "schema at 0011" in upgrade.stdout and "partitions created: 16" in upgrade.stdout
    status = run_cli(env, "db", "status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["up_to_date"] and report["partitions"]["chunks"]["count"] == 4
    maintain = run_cli(env, "db", "maintain", "--dry-run")
    assert maintain.returncode == 0 and "would be created: none" in maintain.stdout
    down = run_cli(env, "db", "downgrade", "base", "--yes")
    assert down.returncode == 0 and "schema at base" in down.stdout

    nowhere = f"postgresql://x:y@127.0.0.1:{free_port()}/z"
    unreachable = env | {"SOUNDSCAPE_POSTGRES__URL": nowhere,
                         "SOUNDSCAPE_POSTGRES__OWNER_URL": nowhere}
    failed = run_cli(unreachable, "db", "status")
    assert failed.returncode == 3
    assert "cannot reach the database" in failed.stderr and "hint:" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_sink_service_serves_health_and_metrics_and_stops_on_sigterm(
    sink_settings: Settings, publisher: ResultPublisher, tmp_path: Path
) -> None:
    port = free_port()
    log_file = (tmp_path / "sink.log").open("w")
    proc = subprocess.Popen(
        [*SOUNDSCAPE, "sink", "--group-id", "cli-sink"],
        env=env_for(sink_settings, SOUNDSCAPE_METRICS_PORT=str(port)),
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    try:
        health = _wait_json(f"http://127.0.0.1:{port}/healthz", lambda h: h.get("healthy"), 60)
        assert health["database"] == "up"
        publisher.results(detection_stream(40, 2, (time.time_ns() // NS - 3600) * NS))
        _wait_json(f"http://127.0.0.1:{port}/healthz", lambda h: h["stored"] == 40, 60)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'soundscape_sink_messages_total{outcome="stored"}' in metrics
        assert "soundscape_sink_database_up 1.0" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log_file.close()
    assert table_counts(sink_settings)["chunks"] == 40
    lines = [json.loads(line) for line in (tmp_path / "sink.log").read_text().splitlines()
             if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "sink consuming" in events and "stop requested" in events and "sink stopped" in events


def test_a_killed_sink_gets_its_partitions_back_at_once_with_a_stable_instance_id(
        sink_settings: Settings, tmp_path: Path) -> None:
    """kill -9 and restart, with and without `kafka.instance_id` (static membership), in
    one run: without, the group waits for the dead member's session to expire
    (`kafka.session_timeout_ms`, 10 s; librdkafka's default was 45 s); with, the restarted
    sink takes its partitions back as soon as it is up."""
    seconds = {}
    for kind, extra in (("dynamic", {}), ("static", {"SOUNDSCAPE_KAFKA__INSTANCE_ID": "sink-a"})):
        port = free_port()
        env = env_for(sink_settings, SOUNDSCAPE_METRICS_PORT=str(port), **extra)
        command = [*SOUNDSCAPE, "sink", "--group-id", f"recovery-{kind}"]
        with (tmp_path / f"{kind}.log").open("w") as log:
            first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                health = _wait_json(f"http://127.0.0.1:{port}/healthz",
                                    lambda h: h.get("assigned_partitions", 0) > 0, 60)
                first.kill()
                first.wait(10)
                restarted = time.monotonic()
                second = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    _wait_json(f"http://127.0.0.1:{port}/healthz",
                               lambda h, n=health["assigned_partitions"]:
                               h.get("assigned_partitions") == n, 90)
                    seconds[kind] = time.monotonic() - restarted
                finally:
                    second.kill()
                    second.wait(10)
            finally:
                if first.poll() is None:
                    first.kill()
    print(f"\npartitions back after kill -9 and restart: "
          f"{ {k: round(v, 1) for k, v in seconds.items()} } s")
    assert seconds["static"] < seconds["dynamic"]
    assert seconds["dynamic"] >= sink_settings.kafka.session_timeout_ms / 1000 * 0.8


def test_bench_sink_prints_figures_as_json(services: Settings) -> None:
    result = run_cli(env_for(services), "bench", "sink", "--results", "3000", "--batch-size",
                     "500", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["results"] == figures["stored"] == 3000 and figures["batch_size"] == 500
    assert figures["duplicates"] == figures["dead_lettered"] == 0
    assert figures["end_to_end_results_per_s"] > 0 and figures["database_write_results_per_s"] > 0


def test_bench_sink_compares_one_sink_process_with_two(services: Settings) -> None:
    result = run_cli(env_for(services), "bench", "sink", "--results", "6000", "--batch-size",
                     "500", "--sinks", "1,2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert set(figures["sinks"]) == {"1", "2"}
    for round_ in figures["sinks"].values():
        assert round_["stored"] == 6000  # each round its own backlog, all of it stored
        assert round_["results_per_s"] > 0 and round_["measured_results"] > 0
        assert round_["python_cpu_us_per_result"] > 0
    assert figures["vs_one_sink"]["1"] == 1.0
    assert figures["writer_alone_results_per_s"] > 0
    assert set(figures["vs_writer_alone"]) == {"1", "2"}
    bad = run_cli(env_for(services), "bench", "sink", "--sinks", "0,x")
    assert bad.returncode == 2 and "sink counts between 1 and 16" in bad.stderr


def _wait_json(url: str, condition, timeout_s: float) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                last = json.loads(response.read())
        except OSError as exc:  # not listening yet, or 503 while unhealthy
            last = exc
            body = getattr(exc, "read", None)
            if body is not None:
                last = json.loads(body())
        if isinstance(last, dict) and condition(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{url}: condition not met, last answer {last}")


def test_models_register_vouches_for_the_workers_bundle(results_db: Settings, tmp_path: Path) -> None:
    """`models register` with no argument registers the bundle `soundscape worker` would
    run; a bundle whose files do not match its manifest is refused before any row."""
    from soundscape.bundle import read_manifest
    from soundscape.models import DEMO_BUNDLE

    env = env_for(results_db)
    done = run_cli(env, "models", "register", "--json")
    assert done.returncode == 0, done.stderr
    version = read_manifest(DEMO_BUNDLE).version
    content_hash = hashlib.sha256((DEMO_BUNDLE / "bundle.json").read_bytes()).hexdigest()
    assert json.loads(done.stdout) == {
        "version": version, "new": True, "labels": 12, "content_hash": content_hash,
        "location": str((results_db.state_dir / "model-store" / content_hash).resolve())}
    again = run_cli(env, "models", "register", str(DEMO_BUNDLE))
    assert again.returncode == 0 and "already registered" in again.stdout
    listed = json.loads(run_cli(env, "models", "list", "--json").stdout)
    assert [row["version"] for row in listed if row["registered_at"]] == ["sample-1", version] \
        or [row["version"] for row in listed if row["registered_at"]] == [version, "sample-1"]

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for item in DEMO_BUNDLE.iterdir():
        (tampered / item.name).write_bytes(item.read_bytes())
    labels = tampered / read_manifest(DEMO_BUNDLE).labels.file
    labels.write_text(labels.read_text().replace("\n", " \n", 1))
    refused = run_cli(env, "models", "register", str(tampered))
    assert refused.returncode != 0 and "sha256" in refused.stderr, refused.stderr
    assert len(json.loads(run_cli(env, "models", "list", "--json").stdout)) == 2
