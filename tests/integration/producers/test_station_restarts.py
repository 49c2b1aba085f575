"""Stops, restarts and reboots: SIGTERM completes the chunk, a restart records the gap,
chunks spooled while Kafka was unreachable are sent by the next start. Metrics and
health are served while the station runs."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from soundscape.infra.process import free_port
from soundscape.settings import Settings

from conftest import cli_env, read_topic, soundscape_cmd

T0 = 1_714_541_400 * 10**9
CHUNK_NS = 10 * 10**9


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_sigterm_restart_and_reboot_lose_nothing_and_record_gaps(
    kafka_settings: Settings, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    port = free_port()
    env = cli_env(kafka_settings, tmp_path, SOUNDSCAPE_METRICS_PORT=str(port))
    station = ["station", "--station", "gate-7", "--source", "synthetic", "--json"]

    # 1. Recording at 5 x real time; SIGTERM arrives inside the second chunk.
    proc = subprocess.Popen(soundscape_cmd(*station, "--speed", "5", "--start",
                                           "2024-05-01T05:30:00Z"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    status, health = _get(f"http://127.0.0.1:{port}/healthz")
    _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert status == 200 and json.loads(health)["healthy"] is True
    assert 'soundscape_station_spool_depth_chunks{station="gate-7"}' in metrics
    assert 'soundscape_station_cpu_seconds_total{stage="encode",station="gate-7"}' in metrics
    first = json.loads(out)
    assert first["chunks_captured"] >= 1 and first["dropped_samples"] == 0  # completed, not cut
    captured = first["chunks_captured"]

    # 2. A restart a minute of recording time later: the gap is in the header.
    second = run_cli([*station, "--speed", "0", "--start", "2024-05-01T05:31:00Z",
                      "--chunks", "1"], env)
    assert second.returncode == 0, second.stderr[-3000:]

    # 3. Kafka unreachable: the chunks stay spooled (a reboot comes next) ...
    dead = env | {"SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                  "SOUNDSCAPE_METRICS_PORT": "0"}
    third = run_cli([*station, "--speed", "0", "--start", "2024-05-01T05:33:00Z",
                     "--chunks", "2", "--drain-timeout", "1"], dead)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads(third.stdout)["spool_depth"] == 2
    # ... and the next start, with Kafka back, sends them.
    fourth = run_cli([*station, "--drain-only"], env)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert json.loads(fourth.stdout)["spool_depth"] == 0

    total = captured + 3
    records = read_topic(kafka_settings, kafka_settings.topics.audio, expected=total)
    envelopes = sorted((r.envelope() for r in records), key=lambda e: e.seq)
    assert [e.seq for e in envelopes] == list(range(total))
    starts = [e.chunk_start for e in envelopes]
    assert starts[:captured] == [T0 + k * CHUNK_NS for k in range(captured)]
    assert starts[captured:] == [T0 + 60 * 10**9, T0 + 180 * 10**9, T0 + 190 * 10**9]
    gaps = [e.gap_ns for e in envelopes]
    assert gaps[:captured] == [0] * captured
    assert gaps[captured] == 60 * 10**9 - captured * CHUNK_NS  # SIGTERM -> restart
    assert gaps[captured + 1:] == [110 * 10**9, 0]  # 05:31:10 -> 05:33:00, then abutting


def test_bad_station_input_is_a_clear_error(
    kafka_settings: Settings, tmp_path: Path,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    env = cli_env(kafka_settings, tmp_path)
    bad_id = run_cli(["station", "--station", "Marsh 3", "--source", "synthetic"], env)
    assert bad_id.returncode == 2 and "hint:" in bad_id.stderr
    assert "Traceback" not in bad_id.stderr
    missing = run_cli(["station", "--station", "s1", "--source", str(tmp_path / "nope")], env)
    assert missing.returncode == 2 and "neither mic, synthetic" in missing.stderr
