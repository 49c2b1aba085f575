"""PostgreSQL stopped in the middle of a stream and started again: the sink pauses,
commits nothing while it is down, and every result lands exactly once.

The database is a cluster of this test's own (the session's stays up for the others).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sink_testkit import ResultPublisher, column, committed_and_end, quick_sink, scalar

from soundscape.errors import ServiceError
from soundscape.infra.postgres.cluster import PostgresCluster
from soundscape.infra.process import free_port
from soundscape.kafka_clients import bootstrap_servers
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import register_sample_bundle
from soundscape.sinks.sample_results import NS, detection_stream

RESULTS = 600
START = (time.time_ns() // NS - 86_400) * NS


@pytest.fixture
def own_cluster(kafka_settings: Settings, run_state_dir: Path) -> Iterator[tuple[Settings, PostgresCluster]]:
    settings = kafka_settings.model_copy(update={
        "state_dir": run_state_dir / "outage-postgres",
        # The broker is found through the session's state folder: name it outright.
        "kafka": kafka_settings.kafka.model_copy(
            update={"bootstrap_servers": bootstrap_servers(kafka_settings)}
        ),
        # The database is this cluster's, not the session's (which may be given by URL).
        "postgres": kafka_settings.postgres.model_copy(
            update={"url": None, "reader_url": None, "port": 0}
        ),
    })
    settings = quick_sink(settings, batch_size=25, retry_initial_ms=50, retry_max_ms=400)
    cluster = PostgresCluster(settings)
    cluster.start()
    try:
        migrate.upgrade(settings)
        register_sample_bundle(settings)  # the sink stores results of registered bundles
        yield settings, cluster
    finally:
        cluster.stop()


def test_postgres_outage_mid_stream_loses_and_doubles_nothing(
    own_cluster: tuple[Settings, PostgresCluster], start_sink
) -> None:  # type: ignore[no-untyped-def]
    settings, cluster = own_cluster
    group = settings.sink.group_id
    results = list(detection_stream(RESULTS, 6, START))
    thirds = [results[i * RESULTS // 3:(i + 1) * RESULTS // 3] for i in range(3)]
    publisher = ResultPublisher(settings)
    sink = start_sink(settings)

    publisher.results(thirds[0])
    sink.wait_for(lambda: sink.service.stats.stored >= 100, 60, "the first results stored")

    cluster.stop()  # mid-stream: more is published while the database is down
    publisher.results(thirds[1])
    sink.wait_for(lambda: sink.service.health()["paused"], 30, "consumption paused")
    health = sink.service.health()
    assert health["database"] == "down" and not health["healthy"]
    committed_before, _ = committed_and_end(settings, group)
    stored_before = sink.service.stats.stored
    time.sleep(2.0)  # several retries
    assert committed_and_end(settings, group)[0] == committed_before, "committed while down"
    assert sink.service.stats.stored == stored_before
    assert committed_before <= stored_before < RESULTS

    cluster.start()
    publisher.results(thirds[2])
    sink.wait_for(lambda: committed_and_end(settings, group)[0] == RESULTS, 90,
                  "everything committed after the restart")
    sink.stop()

    stats = sink.service.stats
    assert stats.outages >= 1 and stats.retries >= 1
    assert scalar(settings, "SELECT count(*) FROM chunks") == RESULTS
    assert scalar(settings, "SELECT count(DISTINCT chunk_id) FROM chunks") == RESULTS
    assert scalar(settings, "SELECT count(*) FROM detections") == 3 * RESULTS
    stored_ids = {str(r) for r in column(settings, "SELECT chunk_id FROM chunks")}
    assert stored_ids == {str(d.chunk_id) for d in results}
    assert committed_and_end(settings, group) == (RESULTS, RESULTS)


def test_sink_started_before_the_database_waits_for_it(kafka_settings: Settings, start_sink) -> None:  # type: ignore[no-untyped-def]
    nowhere = SecretStr(f"postgresql://w:p@127.0.0.1:{free_port()}/none")
    settings = quick_sink(kafka_settings.model_copy(
        update={"postgres": kafka_settings.postgres.model_copy(update={"url": nowhere})}
    ))
    sink = start_sink(settings)
    sink.wait_for(lambda: sink.service.health()["running"], 10, "the sink running")
    time.sleep(1.0)  # several connection attempts
    health = sink.service.health()
    assert health["database"] == "down" and not health["healthy"] and health["consumed"] == 0
    sink.stop(timeout_s=10)  # a stop while waiting is prompt


def test_sink_refuses_a_schema_that_is_not_the_newest(sink_settings: Settings, start_sink) -> None:  # type: ignore[no-untyped-def]
    migrate.downgrade(sink_settings, "0001")
    sink = start_sink(sink_settings)
    sink.thread.join(30)
    assert isinstance(sink.error, ServiceError)
    assert "schema is at 0001" in str(sink.error) and "soundscape db upgrade" in str(sink.error)


def test_partitions_paused_in_an_outage_come_back_unpaused(
    own_cluster: tuple[Settings, PostgresCluster], start_sink
) -> None:  # type: ignore[no-untyped-def]
    """librdkafka keeps a partition's pause across a revoke and a later re-assignment. A
    sink paused by an outage whose partitions moved to another member, and came back
    after the database did, must fetch them again (a chaos run saw two partitions stand
    still for good that way, with every process alive)."""
    from confluent_kafka import Consumer

    settings, cluster = own_cluster
    group = settings.sink.group_id
    results = list(detection_stream(RESULTS, 6, START - 2 * 86_400 * NS))  # not the others'
    thirds = [results[i * RESULTS // 3:(i + 1) * RESULTS // 3] for i in range(3)]
    publisher = ResultPublisher(settings)
    sink = start_sink(settings)
    publisher.results(thirds[0])
    sink.wait_for(lambda: sink.service.stats.stored >= 100, 60, "the first results stored")

    cluster.stop()
    publisher.results(thirds[1])
    sink.wait_for(lambda: sink.service.health()["paused"], 30, "consumption paused")
    # Another member takes half the partitions (eager: the sink gives up all of them,
    # paused, and gets half back, paused again) and never commits.
    other = Consumer({"bootstrap.servers": bootstrap_servers(settings), "group.id": group,
                      "enable.auto.commit": False, "session.timeout.ms": 10_000})
    try:
        other.subscribe([settings.topics.detections, settings.topics.heartbeats,
                         settings.topics.drift])
        deadline = time.monotonic() + 60
        while not other.assignment():
            assert time.monotonic() < deadline, "the other member never got partitions"
            other.poll(0.2)
        cluster.start()  # the sink resumes what it holds now
        sink.wait_for(lambda: not sink.service.health()["paused"], 60, "consumption resumed")
        for _ in range(10):
            other.poll(0.1)
    finally:
        other.close()  # leaves: its partitions go back to the sink, the database up
    publisher.results(thirds[2])
    sink.wait_for(lambda: committed_and_end(settings, group)[0] == RESULTS, 90,
                  "everything committed, the partitions that came back included")
    sink.stop()
    stored_ids = {str(r) for r in column(settings, "SELECT chunk_id FROM chunks")}
    assert {str(d.chunk_id) for d in results} <= stored_ids
    assert scalar(settings, "SELECT count(*) FROM chunks") == len(stored_ids)  # none twice
