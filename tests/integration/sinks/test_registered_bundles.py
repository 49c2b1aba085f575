"""The sink stores results of registered bundles only: a hand-written result (the attack
of issue 18: bundle `forged-bundle`, label `FORGED-SPECIES`) is dead-lettered with its
reason even when it reaches the topic ahead of the real result of the same chunk, and
never takes that chunk's place; a version registered while the sink runs is stored from
then on; a registered version cannot be re-registered with other files."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer
from sink_testkit import ResultPublisher, column, scalar

from soundscape.database import database_url
from soundscape.errors import UserError
from soundscape.kafka_clients import consumer_config
from soundscape.messages import LabelScore
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.bundle_registry import BundleRecord, list_bundles, register_bundle
from soundscape.sinks.sample_results import NS, detection, register_sample_bundle

START = (time.time_ns() // NS - 86_400) // 10 * 10 * NS


def _forged(station: str, chunk_start: int, version: str = "forged-bundle"):  # type: ignore[no-untyped-def]
    real = detection(station, chunk_start, detections=1)
    fake = LabelScore(label="FORGED-SPECIES", probability=0.99)
    return real.model_copy(update={"bundle_version": version, "worker_id": "attacker",
                                   "top_k": [fake], "detections": [fake]})


def _dead_letters(settings: Settings, count: int) -> list[dict[str, bytes]]:
    consumer = Consumer(consumer_config(settings, f"dlq-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([settings.topics.results_dlq])
    found: list[dict[str, bytes]] = []
    deadline = time.monotonic() + 30
    while len(found) < count and time.monotonic() < deadline:
        found += [dict(m.headers() or []) for m in consumer.consume(10, 1.0) if m.error() is None]
    consumer.close()
    return found


def test_a_forged_result_ahead_of_the_real_one_is_dead_lettered_and_never_stored(
        sink_settings: Settings, publisher: ResultPublisher, start_sink) -> None:  # type: ignore[no-untyped-def]
    chunks = [START + i * 10 * NS for i in range(5)]
    # The forger is first for every chunk (chunk ids are predictable), then the worker.
    publisher.results([_forged("st-1", t) for t in chunks])
    publisher.results([detection("st-1", t) for t in chunks])
    sink = start_sink(sink_settings)
    sink.wait_for(lambda: sink.service.stats.stored + sink.service.stats.dead_lettered == 10, 60,
                  "all ten results handled")
    sink.stop()
    assert sink.service.stats.dead_lettered == 5 and sink.service.stats.stored == 5
    assert column(sink_settings, "SELECT DISTINCT bundle_version FROM chunks") == ["sample-1"]
    assert scalar(sink_settings, "SELECT count(*) FROM detections "
                                 "WHERE label = 'FORGED-SPECIES'") == 0
    assert scalar(sink_settings, "SELECT count(*) FROM chunks WHERE worker_id = 'attacker'") == 0
    assert column(sink_settings, "SELECT bundle_version FROM models") == ["sample-1"]
    letters = _dead_letters(sink_settings, 5)
    assert len(letters) == 5
    for headers in letters:
        assert headers["dlq_reason"].startswith(b"unregistered_bundle: bundle version "
                                                b"'forged-bundle' is not registered")


def test_a_bundle_registered_while_the_sink_runs_is_stored_from_then_on(
        sink_settings: Settings, publisher: ResultPublisher, start_sink) -> None:  # type: ignore[no-untyped-def]
    sink = start_sink(sink_settings)
    publisher.results([detection("st-2", START, bundle_version="new-1")])
    sink.wait_for(lambda: sink.service.stats.dead_lettered == 1, 60, "the unregistered result")
    register_sample_bundle(sink_settings, version="new-1")
    publisher.results([detection("st-2", START + 10 * NS, bundle_version="new-1")])
    sink.wait_for(lambda: sink.service.stats.stored == 1, 60, "the registered result")
    sink.stop()
    assert column(sink_settings, "SELECT chunk_start_ns FROM chunks") == [START + 10 * NS]
    row = next(b for b in list_bundles(sink_settings) if b["version"] == "new-1")
    assert row["registered_at"] is not None and row["last_used"] is not None


def test_a_version_is_one_set_of_files(results_db: Settings) -> None:
    record = BundleRecord("v-1", {"fusion": "a" * 64}, ["x"], {}, "/bundles/v-1")
    assert register_bundle(results_db, record) is True
    assert register_bundle(results_db, record) is False  # again: nothing changes
    with pytest.raises(UserError, match="registered with other files"):
        register_bundle(results_db, BundleRecord("v-1", {"fusion": "b" * 64}, ["x"], {}, "/x"))
    assert [b["location"] for b in list_bundles(results_db) if b["version"] == "v-1"] == \
        ["/bundles/v-1"]


def test_the_upgrade_registers_bundles_that_already_produced_results(db_settings: Settings) -> None:
    migrate.upgrade(db_settings, "0004")
    with psycopg.connect(database_url(db_settings, "writer")) as conn:
        conn.execute("INSERT INTO models (bundle_version, first_used, last_used) "
                     "VALUES ('running-1', now() - interval '1 day', now())")
    migrate.upgrade(db_settings)
    (row,) = list_bundles(db_settings)
    assert row["version"] == "running-1" and row["registered_at"] == row["first_used"]
