"""The station's two senders against a real broker: the spool forwarder (ordered, deletes
only acked chunks, moves aside what the broker can never take) and the heartbeat sender
(periodic, plus a last one on stop)."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from soundscape.kafka_clients import admin_config
from soundscape.messages import Heartbeat
from soundscape.producers.forwarder import SpoolForwarder
from soundscape.producers.heartbeats import HeartbeatSender
from soundscape.producers.spool import DiskSpool
from soundscape.settings import Settings
from soundscape.synthetic.chunks import generated_chunks

from conftest import read_topic

_START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01


def _wait(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _shrink_topic(settings: Settings, topic: str, max_bytes: int) -> None:
    admin = AdminClient(admin_config(settings))
    entry = ConfigEntry("max.message.bytes", str(max_bytes),
                        incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_forwarder_sends_in_order_deletes_acked_and_sets_aside_refused(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"station": kafka_settings.station.model_copy(
        update={"max_in_flight": 3, "retry_backoff_max_s": 1.0})})
    spool = DiskSpool(tmp_path / "spool", max_bytes=64 * 1024 * 1024)
    chunks = list(generated_chunks(8, stations=1, start_ns=_START_NS))
    for envelope, payload in chunks[:6]:
        spool.put(envelope, payload)
    cpu: dict[str, float] = {}
    forwarder = SpoolForwarder(settings, spool, cpu).start()
    try:
        assert forwarder.drain(timeout_s=60), f"{spool.depth} chunks still spooled"
        assert forwarder.acked == 6 and forwarder.failures == 0
        assert not list((tmp_path / "spool").glob("*.chunk*")), "acked chunks left on disk"
        records = read_topic(settings, settings.topics.audio, expected=6)
        # One station, one key: one partition, in seq order, payloads intact.
        assert [r.envelope().seq for r in records] == [0, 1, 2, 3, 4, 5]
        assert [r.value for r in records] == [p for _, p in chunks[:6]]
        assert cpu.get("publish", 0) > 0

        # The broker refuses anything bigger than 2 KB from now on: a permanent error, so
        # the chunk is moved aside for a person, not retried for ever.
        _shrink_topic(settings, settings.topics.audio, 2048)
        envelope, payload = chunks[6]
        spool.put(envelope, payload)
        forwarder.notify()
        assert _wait(lambda: forwarder.rejected == 1), "the refused chunk was not set aside"
        assert spool.depth == 0 and spool.corrupt == 1
        assert len(list((tmp_path / "spool" / "corrupt").iterdir())) == 1
        assert forwarder.alive
    finally:
        forwarder.stop()


def test_forwarder_keeps_unacked_chunks_for_the_next_start(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Stopped before it could send: nothing is lost, a new forwarder sends it all."""
    spool_dir = tmp_path / "spool"
    spool = DiskSpool(spool_dir, max_bytes=64 * 1024 * 1024)
    # A spool belongs to one station (files are named by seq).
    for envelope, payload in generated_chunks(4, stations=1, start_ns=_START_NS):
        spool.put(envelope, payload)
    SpoolForwarder(kafka_settings, spool, {}).stop()  # never started
    assert DiskSpool(spool_dir, max_bytes=64 * 1024 * 1024).depth == 4

    again = DiskSpool(spool_dir, max_bytes=64 * 1024 * 1024)
    forwarder = SpoolForwarder(kafka_settings, again, {}).start()
    try:
        assert forwarder.drain(timeout_s=60)
    finally:
        forwarder.stop()
    records = read_topic(kafka_settings, kafka_settings.topics.audio, expected=4)
    assert [r.envelope().seq for r in records] == [0, 1, 2, 3]


def test_heartbeats_are_periodic_and_a_last_one_is_sent_on_stop(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"station": kafka_settings.station.model_copy(
        update={"heartbeat_interval_s": 0.3})})
    made: list[int] = []

    def make() -> Heartbeat:
        made.append(len(made))
        return Heartbeat(station_id="hb-station", sent_at=time.time_ns(),
                         software_version="test", disk_free_bytes=1, spool_depth=len(made),
                         spool_bytes=0)

    sender = HeartbeatSender(settings, make).start()
    assert _wait(lambda: sender.sent >= 3, timeout_s=30)
    sender.stop(flush_timeout_s=10)
    sent = sender.sent
    assert sender.delivered == sent, f"{sender.delivered} of {sent} delivered"
    records = read_topic(settings, settings.topics.heartbeats, expected=sent)
    beats = [Heartbeat.model_validate_json(r.value) for r in records]
    assert len(beats) == sent
    assert all(r.key == b"hb-station" for r in records)
    # The last beat is the final state: the highest spool_depth the factory handed out.
    assert beats[-1].spool_depth == len(made) == sent
    times = [b.sent_at for b in beats]
    assert times == sorted(times)
    # Roughly one per interval: three beats took at least two intervals.
    assert times[2] - times[0] >= 0.5e9


def test_heartbeat_factory_failure_does_not_stop_the_sender(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"station": kafka_settings.station.model_copy(
        update={"heartbeat_interval_s": 0.2})})
    calls = {"n": 0}

    def flaky() -> Heartbeat:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk gone")
        return Heartbeat(station_id="hb-flaky", sent_at=time.time_ns(), software_version="t",
                         disk_free_bytes=0, spool_depth=0, spool_bytes=0)

    sender = HeartbeatSender(settings, flaky).start()
    try:
        assert _wait(lambda: sender.sent >= 2, timeout_s=30), "sender stopped after a failure"
    finally:
        sender.stop(flush_timeout_s=10)
    assert calls["n"] >= 3
