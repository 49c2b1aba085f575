"""`soundscape drift run` over a replayed hour: the matching alert within one window for
each drifting station, none for the unchanged one; reports reach drift_reports through
the sink."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from drift_testkit import (
    CHANGE_MIN,
    START,
    START_NS,
    DriftProcess,
    SinkThread,
    batch_equivalent,
    drift_messages,
    hour_of_stations,
    publish,
    rows,
    small_windows,
    wait_for,
)

from soundscape.processors.drift.scenarios import BUNDLE_VERSION
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import register_sample_bundle
from soundscape.sinks.writer import ResultBatch, ResultWriter

ALERTS_SQL = (
    "SELECT station_id, check_name, window_start, window_end, value, reference "
    "FROM drift_reports WHERE alert ORDER BY station_id, check_name, window_start"
)


@pytest.fixture
def stream_settings(kafka_settings: Settings, db_settings: Settings, tmp_path: Path) -> Settings:
    migrate.upgrade(db_settings)
    register_sample_bundle(db_settings, version=BUNDLE_VERSION)  # the sink stores registered ones
    both = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    return small_windows(both, tmp_path)


def publish_poison(settings: Settings, station: str) -> int:
    """Results the sink dead-letters: not JSON, NaN, chunk_start in 2200 (which, read as
    event time, would close every open window) and in 1970. The stream must skip each
    (logged), and its reports must still be those of the stored chunks."""
    import json

    from confluent_kafka import Producer

    from soundscape.envelope import chunk_id_for
    from soundscape.kafka_clients import producer_config
    from soundscape.sinks.sample_results import detection

    def at(start_ns: int) -> bytes:
        value = json.loads(detection(station, START_NS).to_bytes())
        value["chunk_start"] = start_ns
        value["chunk_id"] = str(chunk_id_for(station, start_ns))
        return json.dumps(value).encode()

    nan = json.loads(detection(station, START_NS).to_bytes())
    nan["audio"]["rms_dbfs"] = float("nan")
    values = [b"not json", json.dumps(nan).encode(), at(7_258_118_400 * 10**9), at(10**9)]
    producer = Producer(producer_config(settings))
    for value in values:
        producer.produce(settings.topics.detections, key=station.encode(), value=value)
    assert producer.flush(30) == 0
    return len(values)


def first_alert(alerts: list[tuple], station: str, check: str) -> tuple:
    found = [a for a in alerts if a[0] == station and a[1] == check]
    assert found, f"no {check} alert for {station}; alerts: {[(a[0], a[1]) for a in alerts]}"
    return found[0]


def test_stream_alerts_on_noise_and_species_change_within_one_window(
    stream_settings: Settings, tmp_path: Path
) -> None:
    settings = stream_settings
    messages = hour_of_stations()
    half = START_NS + 30 * 60 * 10**9
    published = publish(settings, [m for m in messages if m.chunk_start < half])
    poison = publish_poison(settings, "steady")  # mid-stream, in a drifting station's partition
    published += publish(settings, [m for m in messages if m.chunk_start >= half])
    assert published > 1400
    sink = SinkThread(settings)
    drift = DriftProcess(settings, tmp_path / "drift.log")
    try:
        # The last windows to close start at 04:45 (hopping 10 min every 5 min, 30 s grace
        # after the newest chunk at 05:00); the silent station is found by the timer.
        wait_for(
            lambda: bool(rows(settings, "SELECT 1 FROM drift_reports WHERE station_id = "
                                        "'steady' AND window_start = %s",
                              START + timedelta(minutes=45)))
            and bool(rows(settings, "SELECT 1 FROM drift_reports WHERE check_name = 'silent'")),
            300, "the last windows' reports in drift_reports", drift.alive,
        )
    finally:
        code = drift.stop()
        sink.stop()
    assert code == 0, drift.log.read_text()[-3000:]
    skipped = drift.log.read_text().count("detection skipped")
    assert skipped == poison, f"{skipped} of {poison} malformed detections skipped"

    alerts = rows(settings, ALERTS_SQL)
    change = START + timedelta(minutes=CHANGE_MIN)
    window = timedelta(seconds=settings.drift.window_s)
    # Within one window: the first window holding changed chunks alerts.
    for station, check in (("noisy", "noise_floor"), ("new-season", "label_js"),
                           ("gappy", "gaps")):
        _, _, start, end, value, reference = first_alert(alerts, station, check)
        assert start <= change < end <= change + window, (station, check, start, end)
        if check != "gaps":
            assert reference["mode"] == "previous" and reference["reference_chunks"] >= 30
    assert first_alert(alerts, "noisy", "noise_floor")[4] > 6.0
    silent = first_alert(alerts, "quiet", "silent")
    assert silent[2] == START + timedelta(minutes=20)  # the end of its last chunk
    assert not [a for a in alerts if a[0] == "steady"], "the unchanged station alerted"

    # Every closed window of the unchanged station was checked: 4 to 5 with a reference
    # (10-min windows every 5 min, the first reference complete from 04:30), all 9 checks.
    checked = rows(settings, "SELECT window_start, count(*) FROM drift_reports "
                             "WHERE station_id = 'steady' GROUP BY 1 ORDER BY 1")
    assert checked[-1][0] == START + timedelta(minutes=45)
    assert {n for _, n in checked if _ >= START + timedelta(minutes=10)} == {9}

    # One implementation: the batch checks over the chunks the sink stored give the
    # stream's reports, value for value, for every window the stream could close (the
    # stream closes a station's window when that station's chunks pass its end + grace).
    last_end = dict(rows(settings, "SELECT station_id, max(chunk_start_ns) + 10e9::bigint "
                                   "FROM chunks GROUP BY 1"))
    from_batch = batch_equivalent(settings, last_end)
    from_stream = {
        (station, check, int(start.timestamp()) * 10**9, value, alert)
        for station, check, start, value, alert in rows(
            settings, "SELECT station_id, check_name, window_start, value, alert "
                      "FROM drift_reports WHERE window_start >= %s", START)
    }
    assert from_batch == from_stream
    assert len(from_stream) > 200


def _health(port: int) -> dict:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def _restart(settings: Settings, tmp_path: Path, how: str) -> None:
    """Stop drift run part-way and start it again; every report must be published once,
    with the values the batch checks give over the same chunks.

    `stop` and `lose_state`: publish half an hour, run until its windows are out, stop
    (SIGTERM; `lose_state` then deletes the RocksDB folder), publish the rest, run again.
    `kill`: publish the hour, SIGKILL the worker while it works through that backlog (its
    open transaction never commits), run again.
    """
    import shutil
    import signal
    import socket

    messages = hour_of_stations()
    half = START_NS + 30 * 60 * 10**9
    writer = ResultWriter(settings)  # the chunks, for the batch checks to compare with
    try:
        writer.write(ResultBatch(detections=messages))
    finally:
        writer.close()

    if how == "kill":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        publish(settings, messages)
        first = DriftProcess(settings.model_copy(update={"metrics_port": port}),
                             tmp_path / "first.log")
        try:
            wait_for(lambda: _health(port).get("processed", 0) >= 300, 120,
                     "300 chunks processed", first.alive)
            processed = _health(port).get("processed", 0)
            first.process.send_signal(signal.SIGKILL)
            assert first.process.wait(30) == -signal.SIGKILL
            assert processed < len(messages), "the backlog was done before the kill"
        finally:
            first.stop()
    else:
        publish(settings, [m for m in messages if m.chunk_start < half])
        first = DriftProcess(settings, tmp_path / "first.log")
        try:
            wait_for(lambda: any(r.window_start == START_NS + 15 * 60 * 10**9
                                 for r in drift_messages(settings, idle_s=1.0)),
                     300, "the windows of the first half", first.alive)
        finally:
            assert first.stop() == 0, first.log.read_text()[-3000:]
        if how == "lose_state":
            shutil.rmtree(settings.drift.data_dir or "")  # the local state is gone
        publish(settings, [m for m in messages if m.chunk_start >= half])

    second = DriftProcess(settings, tmp_path / "second.log")
    try:
        wait_for(lambda: any(r.window_start == START_NS + 45 * 60 * 10**9
                             and r.station_id == "steady"
                             for r in drift_messages(settings, idle_s=1.0)),
                 300, "the last windows", second.alive)
        wait_for(lambda: any(r.check == "silent" for r in drift_messages(settings, idle_s=1.0)),
                 120, "the silent station", second.alive)
    finally:
        assert second.stop() == 0, second.log.read_text()[-3000:]

    reports = drift_messages(settings)
    keys = [(r.station_id, r.check, r.window_start) for r in reports]
    assert len(keys) == len(set(keys)), "a report was published twice"
    last_end = {}
    for m in messages:
        last_end[m.station_id] = max(last_end.get(m.station_id, 0), m.chunk_start + 10**10)
    published = {(r.station_id, r.check, r.window_start, r.value, r.alert) for r in reports
                 if r.window_start >= START_NS}
    expected = batch_equivalent(settings, last_end)
    # Every window is checked and reported once, as in one uninterrupted run ...
    assert {r[:3] for r in published} == {r[:3] for r in expected}
    # ... and with its values.
    differing = published - expected
    assert not differing, (
        f"{len(differing)} of {len(expected)} reports differ from the batch checks; "
        f"stream: {sorted(differing)[:8]}; batch: {sorted(expected - published)[:8]}")


def test_restart_keeping_local_state_reports_as_one_run(
    stream_settings: Settings, tmp_path: Path
) -> None:
    """A stop and start half-way (a deploy, a reboot) changes no report."""
    _restart(stream_settings, tmp_path, "stop")


def test_restart_with_lost_local_state_recovers_from_kafka_exactly_once(
    stream_settings: Settings, tmp_path: Path
) -> None:
    """Stop half-way, delete the RocksDB folder, go on: the state comes back from the
    changelog topics, and the reports are those of one run."""
    _restart(stream_settings, tmp_path, "lose_state")


def test_kill_during_a_backlog_reports_as_one_run(
    stream_settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL mid-backlog (a power cut): Kafka aborts the open transaction, and the next
    start redoes its chunks from the committed offsets; no report is lost or repeated."""
    _restart(stream_settings, tmp_path, "kill")
