"""A station that scores its own chunks with the demo int8 bundle and sends no audio:
its signed edge results reach `edge_results` through `soundscape sink --edge`, nothing reaches the
audio topic (the audio stays spooled), and results that are not the station's own
(unsigned, signed by another station, altered, not marked edge) are refused when
signatures are required."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer

from soundscape.app.bundle_registration import register
from soundscape.chunk_signing import ChunkSigner, new_private_key_text, public_key_text, private_key_from_text, result_headers
from soundscape.database import database_url
from soundscape.infra.process import free_port
from soundscape.envelope import chunk_id_for
from soundscape.kafka_clients import producer_config
from soundscape.messages import Detection, Heartbeat, parse
from soundscape.models import DEMO_INT8_BUNDLE
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.signing_keys import register_key

from conftest import cli_env, read_topic, soundscape_cmd

T0 = 1_714_541_400 * 10**9  # 2024-05-01T05:30:00Z
CHUNK_NS = 10 * 10**9
STATION = "edge-1"
CHUNKS = 3


def _edge_env(settings: Settings, state_dir: Path, **extra: str) -> dict[str, str]:
    env = cli_env(settings, state_dir, SOUNDSCAPE_METRICS_PORT="0",
                  SOUNDSCAPE_TOPICS__EDGE_DETECTIONS=settings.topics.edge_detections)
    pg = settings.postgres
    if pg.url is not None:
        env |= {"SOUNDSCAPE_POSTGRES__URL": pg.url.get_secret_value(),
                "SOUNDSCAPE_POSTGRES__DATABASE": pg.database}
    return env | extra


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.loads(answer.read())
    except OSError:
        return {}


def _wait(condition: Callable[[], bool], what: str, alive: Callable[[], bool],
          timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert alive(), f"the process ended while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _forged(good: Detection, **changes: object) -> bytes:
    return good.model_copy(update=changes).to_bytes()


def test_edge_results_stored_apart_no_audio_sent_and_forgeries_refused(
    kafka_settings: Settings, db_settings: Settings, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(settings)
    record, _ = register(settings, DEMO_INT8_BUNDLE)
    key = new_private_key_text()
    register_key(settings, STATION, public_key_text(private_key_from_text(key)))

    env = _edge_env(settings, tmp_path, SOUNDSCAPE_STATION__EDGE_BUNDLE=str(DEMO_INT8_BUNDLE),
                    SOUNDSCAPE_STATION__SEND_AUDIO="false",
                    SOUNDSCAPE_STATION__SIGNING_KEY=key)
    done = run_cli(["station", "--station", STATION, "--source", "synthetic", "--speed", "10",
                    "--start", "2024-05-01T05:30:00Z", "--chunks", str(CHUNKS), "--json"], env,
                   timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["chunks_captured"] == CHUNKS and report["send_audio"] is False
    assert report["edge_scored"] == CHUNKS and report["edge_skipped"] == 0
    assert report["edge_delivered"] == CHUNKS
    assert report["spool_depth"] == CHUNKS and report["chunks_acked"] == 0  # audio kept
    assert report["cpu_s"]["score"] > 0

    # No audio reached the audio topic; the edge results and heartbeats did.
    assert read_topic(settings, settings.topics.audio, timeout_s=8) == []
    edge = read_topic(settings, settings.topics.edge_detections, expected=CHUNKS)
    assert len(edge) == CHUNKS
    results = sorted((parse(Detection, r.value) for r in edge), key=lambda d: d.chunk_start)
    expected_ids = [chunk_id_for(STATION, T0 + k * CHUNK_NS) for k in range(CHUNKS)]
    assert [r.chunk_id for r in results] == expected_ids
    assert {r.worker_id for r in results} == {f"edge:{STATION}"}
    assert {r.bundle_version for r in results} == {record.version}
    assert all(r.key == STATION.encode() and r.header("signer") == STATION for r in edge)
    beats = [parse(Heartbeat, r.value) for r in read_topic(settings, settings.topics.heartbeats)]
    last = max(beats, key=lambda b: b.sent_at)
    assert last.edge_scored == CHUNKS and last.edge_skipped == 0
    assert last.bundle_version == record.version

    # Results that are not the station's own, beside a redelivered good one.
    good, signer = results[0], ChunkSigner.from_text(key, STATION)
    other = T0 + 100 * CHUNK_NS
    unsigned = _forged(good, chunk_start=other, chunk_id=chunk_id_for(STATION, other))
    elsewhere = _forged(good, station_id="edge-2", chunk_id=chunk_id_for("edge-2", good.chunk_start),
                        worker_id="edge:edge-2")
    altered_from = _forged(good, chunk_start=other + CHUNK_NS,
                           chunk_id=chunk_id_for(STATION, other + CHUNK_NS))
    altered = altered_from.replace(b'"top_k":[{"label":"', b'"top_k":[{"label":"x')
    not_edge = _forged(good, worker_id="worker-1", chunk_start=other + 2 * CHUNK_NS,
                       chunk_id=chunk_id_for(STATION, other + 2 * CHUNK_NS))
    producer = Producer(producer_config(settings))
    topic = settings.topics.edge_detections
    sends = [(STATION, unsigned, []),  # unsigned, from a station with a key
             ("edge-2", elsewhere, result_headers(signer, elsewhere)),  # signed by edge-1
             (STATION, altered, result_headers(signer, altered_from)),  # changed after signing
             (STATION, not_edge, result_headers(signer, not_edge)),  # not marked edge
             (STATION, edge[0].value, edge[0].headers)]  # a redelivery
    for key_text, value, headers in sends:
        producer.produce(topic, key=key_text.encode(), value=value, headers=headers)
    assert producer.flush(30) == 0

    # `soundscape sink --edge`, with every result required to be signed
    port = free_port()
    sink = subprocess.Popen(soundscape_cmd("sink", "--edge", "--metrics-port", str(port)),
                            env=_edge_env(settings, tmp_path, SOUNDSCAPE_INTAKE__SIGNATURES="require"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _health(port).get("batches", 0) >= 1
              and _health(port).get("consumed", 0) >= CHUNKS + len(sends), "every result handled",
              alive=lambda: sink.poll() is None)
        stats = _health(port)
    finally:
        sink.send_signal(signal.SIGTERM)
        _, err = sink.communicate(timeout=60)
    assert sink.returncode == 0, err[-3000:]
    assert "edge sink stopped: 3 stored, 1 duplicates skipped, 4 refused" in err
    assert (stats["stored"], stats["duplicates"], stats["refused"], stats["malformed"]) == \
        (CHUNKS, 1, 4, 0)
    refused = [json.loads(line) for line in err.splitlines()
               if line.startswith("{") and "edge result refused" in line]
    assert sorted(r["reason"] for r in refused) == ["bad_signature", "unsigned", "wrong_origin",
                                                    "wrong_signer"]

    with psycopg.connect(database_url(settings)) as conn:
        rows = conn.execute("SELECT chunk_id, station_id, worker_id, signer, bundle_version, "
                            "captured_at <= scored_at FROM edge_results ORDER BY chunk_start"
                            ).fetchall()
        live = conn.execute("SELECT count(*) FROM chunks").fetchone()
    assert [r[0] for r in rows] == expected_ids
    assert {r[1:] for r in rows} == {(STATION, f"edge:{STATION}", STATION, record.version, True)}
    assert live == (0,)  # nothing in the live tables


def test_a_bad_edge_bundle_or_audio_off_without_one_stops_the_station_at_start(
    kafka_settings: Settings, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    broken = tmp_path / "broken-int8"
    shutil.copytree(DEMO_INT8_BUNDLE, broken)
    (broken / "meta.onnx").write_bytes(b"not a graph")
    station = ["station", "--station", STATION, "--source", "synthetic", "--speed", "0",
               "--chunks", "1"]
    bad = run_cli(station, _edge_env(kafka_settings, tmp_path,
                                     SOUNDSCAPE_STATION__EDGE_BUNDLE=str(broken)))
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "station.edge_bundle is unusable" in bad.stderr and "meta.onnx" in bad.stderr
    assert "Traceback" not in bad.stderr
    silent = run_cli(station, _edge_env(kafka_settings, tmp_path,
                                        SOUNDSCAPE_STATION__SEND_AUDIO="false"))
    assert silent.returncode == 2 and "no station.edge_bundle" in silent.stderr
    assert read_topic(kafka_settings, kafka_settings.topics.audio, timeout_s=5) == []


def test_edge_results_waiting_out_an_outage_survive_kill_9_and_go_at_the_next_start(
    kafka_settings: Settings, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A station with no uplink scores 3 chunks, is killed (-9) with their results
    unsent, and its next start (uplink back) sends them before its own: none lost."""
    port, dead = free_port(), free_port()  # nothing listens on `dead`: the uplink is down
    scoring = {"SOUNDSCAPE_STATION__EDGE_BUNDLE": str(DEMO_INT8_BUNDLE),
               "SOUNDSCAPE_STATION__SEND_AUDIO": "false"}
    offline = _edge_env(kafka_settings, tmp_path, **scoring, SOUNDSCAPE_METRICS_PORT=str(port),
                        SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{dead}")
    station = subprocess.Popen(
        soundscape_cmd("station", "--station", STATION, "--source", "synthetic", "--speed", "10",
                       "--start", "2024-05-01T05:30:00Z", "--chunks", "100"),
        env=offline, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _health(port).get("edge_pending", 0) >= CHUNKS, "results on disk",
              alive=lambda: station.poll() is None)
        station.kill()
    finally:
        if station.poll() is None:
            station.kill()
        station.communicate(timeout=30)
    outbox = tmp_path / "station" / STATION / "edge-outbox"
    left = sorted(outbox.glob("*.result"))
    assert len(left) >= CHUNKS, list(outbox.iterdir())

    online = _edge_env(kafka_settings, tmp_path, **scoring)
    done = run_cli(["station", "--station", STATION, "--source", "synthetic", "--speed", "10",
                    "--chunks", "1", "--json"], online, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["edge_resent"] == len(left)
    assert report["edge_delivered"] == len(left) + 1 and report["edge_pending"] == 0
    assert list(outbox.glob("*.result")) == []
    edge = read_topic(kafka_settings, kafka_settings.topics.edge_detections,
                      expected=len(left) + 1)
    starts = [parse(Detection, r.value).chunk_start for r in edge]
    assert len(starts) == len(set(starts)) == len(left) + 1
    assert sorted(starts)[:CHUNKS] == [T0 + k * CHUNK_NS for k in range(CHUNKS)]
    assert starts[: len(left)] == sorted(starts[: len(left)])  # oldest first
