"""`soundscape chaos` end to end: three brokers, two workers, two sinks and the drift app
under a dozen faults at once (kill -9 of workers, sinks, the drift app and brokers,
PostgreSQL stopped, a station offline), and nothing lost or duplicated.

Broker kills joined the plan once the two stalls they caused were found and mended
(docs/how-to/scale-out.md): librdkafka's send_offsets_to_transaction waiting for good on
a coordinator that went away (kafka_clients.send_offsets_bounded), and partitions a sink
had paused in the outage coming back to it still paused (SinkService._release). This
plan stalled on the second before the change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from soundscape.settings import Settings


def test_chaos_run_loses_and_duplicates_nothing(run_state_dir: Path) -> None:
    env = os.environ | {"SOUNDSCAPE_STATE_DIR": str(run_state_dir / "chaos-base")}
    chaos = subprocess.Popen(
        [sys.executable, "-m", "soundscape", "chaos", "--chunks", "400", "--kills", "10",
         "--kinds", "worker,sink,drift,broker", "--speed", "10", "--postgres-outage", "20",
         "--offline-minutes", "5", "--seed", "3",
         "--drain-timeout", "120", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = chaos.communicate(timeout=520)
    except subprocess.TimeoutExpired:
        chaos.send_signal(signal.SIGTERM)  # it stops its services and processes first
        out, err = chaos.communicate(timeout=60)
        raise AssertionError(f"the chaos run took too long:\n{err[-4000:]}") from None
    assert out, err[-4000:]
    report = json.loads(out)
    print(json.dumps({k: report[k] for k in ("counts", "faults_by_kind", "recovery_by_service",
                                             "offline_station", "drift_windows", "seconds")},
                     indent=1))
    assert chaos.returncode == 0 and report["ok"], report["problems"]
    counts = report["counts"]
    assert counts["chunks_expected"] == 400 and counts["stored"] == 400
    assert counts["missing"] == 0 and counts["duplicated"] == 0
    assert counts["results_in_topic"] == 400 and counts["unexpected_results"] == 0
    assert report["dead_letters"]["count"] == 0
    kinds = report["faults_by_kind"]
    assert all(kinds.get(k, 0) >= 1 for k in ("worker", "sink", "drift", "broker", "postgres",
                                               "station_offline")), kinds
    assert sum(kinds.values()) >= 12
    assert len(report["faults"]) == sum(kinds.values()) - kinds["station_offline"]
    assert all(f["recovery_s"] is not None for f in report["faults"]), report["faults"]
    offline = report["offline_station"]
    assert offline["spooled_while_offline"] == 30 and offline["in_order"] and offline["abutting"]
    assert offline["chunks_in_topic"] == 100 and offline["duplicated"] == 0
    drift = report["drift_windows"]
    assert drift["expected"] > 0 and drift["missing"] == 0, drift
    assert not report["state_dir"], "a run with no problem removes its state folder"


def test_reader_positions_show_a_transaction_left_open(kafka_settings: Settings) -> None:
    """What a chaos run records when draining stops: a partition whose last stable offset
    an open transaction holds below the log end, and a group behind a moving one."""
    from confluent_kafka import Producer

    from soundscape.app.chaos_audit import reader_positions
    from soundscape.kafka_clients import producer_config

    topic = kafka_settings.topics.detections
    producer = Producer(producer_config(kafka_settings) | {
        "transactional.id": f"chaos-audit-test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"left open", partition=1)
    producer.flush(30)

    groups = ["never-joined", kafka_settings.sink.group_id]
    found = reader_positions(kafka_settings, groups)
    rows = {row["partition"]: row for row in found["partitions"]}
    assert found["open_transaction_partitions"] == [1]
    assert rows[1]["log_end"] == 1 and rows[1]["last_stable"] == 0
    assert rows[0]["log_end"] == rows[0]["last_stable"] == 2  # the record and its marker
    assert found["behind_by_group"] == {group: [] for group in groups}  # nothing committed

    producer.commit_transaction(30)
    found = reader_positions(kafka_settings, groups)
    assert found["open_transaction_partitions"] == []
