"""The sink service against real Kafka and PostgreSQL: everything lands once, replays
change nothing, bad messages go to the dead-letter topic with their reason."""

from __future__ import annotations

import json
import threading
import time
import uuid

from confluent_kafka import Consumer
from sink_testkit import ResultPublisher, committed_and_end, scalar, table_counts

from soundscape.kafka_clients import consumer_config
from soundscape.settings import Settings
from soundscape.sinks.sample_results import NS, detection, detection_stream, drift_report, heartbeat

START = (time.time_ns() // NS - 2 * 86_400) * NS


def _mixed(count: int) -> list:  # type: ignore[type-arg]
    results: list = list(detection_stream(count, 5, START))  # type: ignore[type-arg]
    results += [heartbeat(f"station-{i % 5:03d}", START + i * 60 * NS) for i in range(20)]
    results += [drift_report(f"station-{i:03d}", START, alert=i == 0) for i in range(5)]
    return results


def test_results_land_once_and_a_replayed_topic_changes_nothing(
    sink_settings: Settings, publisher: ResultPublisher, start_sink
) -> None:  # type: ignore[no-untyped-def]
    messages = _mixed(300)
    total = publisher.results(messages)
    sink = start_sink(sink_settings)
    sink.wait_for(lambda: sink.service.stats.stored == total, 60, f"{total} stored")
    sink.wait_for(lambda: committed_and_end(sink_settings, sink_settings.sink.group_id)[0] == total,
                  30, "offsets committed")
    sink.stop()
    counts = table_counts(sink_settings)
    assert counts == {"stations": 5, "models": 1, "chunks": 300, "detections": 900,
                      "station_heartbeats": 20, "drift_reports": 5}
    assert sink.service.stats.batches >= 300 // sink_settings.sink.batch_size
    assert scalar(sink_settings, "SELECT count(DISTINCT chunk_id) FROM chunks") == 300
    assert scalar(sink_settings, "SELECT count(*) FROM chunks WHERE written_at < scored_at") == 0
    first_seen = scalar(sink_settings, "SELECT min(first_seen) FROM stations")
    assert first_seen.timestamp() == START / NS

    # The same results published again (a replayed topic), read by the same group, and
    # the whole topic read again by a new group: no row more.
    publisher.results(messages)
    again = start_sink(sink_settings)
    again.wait_for(lambda: again.service.stats.duplicates == total, 60, "replay skipped")
    again.stop()
    fresh = start_sink(sink_settings, group_id=f"replay-{uuid.uuid4().hex[:6]}")
    fresh.wait_for(lambda: fresh.service.stats.duplicates == 2 * total, 60, "re-read skipped")
    fresh.stop()
    assert table_counts(sink_settings) == counts
    assert again.service.stats.stored == fresh.service.stats.stored == 0


def test_bad_messages_go_to_the_dead_letter_topic_with_the_reason(
    sink_settings: Settings, publisher: ResultPublisher, start_sink
) -> None:  # type: ignore[no-untyped-def]
    topics = sink_settings.topics
    good = list(detection_stream(30, 3, START))
    publisher.results(good[:15])
    foreign_id = detection("st-9", START).model_copy(update={"chunk_id": uuid.uuid4()})
    nul_label = json.loads(detection("st-9", START + 10 * NS).to_bytes())
    nul_label["detections"][0]["label"] = "wren\u0000"  # valid JSON, refused by PostgreSQL
    bad = {
        b"not json at all": "Detection",
        json.dumps({"schema_version": 2}).encode(): "schema_version",
        foreign_id.to_bytes(): "is not the id of",
        heartbeat("st-9", START).to_bytes(): "Detection",  # a heartbeat on the detections topic
        json.dumps(nul_label).encode(): "database refused",
    }
    for value in bad:
        publisher.raw(topics.detections, value, key=b"st-9")
    publisher.raw(topics.heartbeats, b"{}", key=b"st-9")
    publisher.flush()
    publisher.results(good[15:])
    total = len(good) + len(bad) + 1

    sink = start_sink(sink_settings)
    sink.wait_for(lambda: sink.service.stats.stored + sink.service.stats.dead_lettered == total,
                  60, "every message handled")
    sink.wait_for(lambda: committed_and_end(sink_settings, sink_settings.sink.group_id)[0] == total,
                  30, "offsets committed past the bad messages")
    sink.stop()
    assert table_counts(sink_settings)["chunks"] == 30
    assert sink.service.stats.dead_lettered == len(bad) + 1

    consumer = Consumer(consumer_config(sink_settings, f"dlq-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topics.results_dlq])
    letters = []
    deadline = time.monotonic() + 30
    while len(letters) < len(bad) + 1 and time.monotonic() < deadline:
        letters += [m for m in consumer.consume(10, 1.0) if m.error() is None]
    consumer.close()
    by_value = {m.value(): dict(m.headers() or []) for m in letters}
    assert set(by_value) == set(bad) | {b"{}"}
    for value, expected in bad.items():
        headers = by_value[value]
        assert expected in headers["dlq_reason"].decode(), headers["dlq_reason"]
        assert headers["dlq_source_topic"] == topics.detections.encode()
        assert headers["dlq_rejected_by"] == f"sink/{sink_settings.sink.group_id}".encode()
    assert by_value[b"{}"]["dlq_source_topic"] == topics.heartbeats.encode()


def test_sinks_sharing_a_group_through_rebalances_store_everything_once(
    sink_settings: Settings, publisher: ResultPublisher, start_sink
) -> None:  # type: ignore[no-untyped-def]
    """A second sink joins and the first leaves while results keep arriving."""
    results = list(detection_stream(900, 30, START))  # keys spread over every partition
    group = sink_settings.sink.group_id

    def publish_slowly() -> None:
        for i in range(0, len(results), 20):
            publisher.results(results[i:i + 20])
            time.sleep(0.15)

    stream = threading.Thread(target=publish_slowly)
    first = start_sink(sink_settings)
    stream.start()
    first.wait_for(lambda: first.service.stats.stored > 0, 60, "the first sink writing")
    second = start_sink(sink_settings)
    second.wait_for(lambda: second.service.stats.stored > 0, 60, "the second sink writing")
    first.stop()  # leaves: its partitions move to the second one
    stream.join()
    second.wait_for(lambda: committed_and_end(sink_settings, group)[0] == 900, 60,
                    "everything committed")
    second.stop()
    assert scalar(sink_settings, "SELECT count(*) FROM chunks") == 900
    assert scalar(sink_settings, "SELECT count(DISTINCT chunk_id) FROM chunks") == 900
    assert scalar(sink_settings, "SELECT count(*) FROM detections") == 2700
    stored = first.service.stats.stored + second.service.stats.stored
    assert stored == 900  # every row written by exactly one of them, none lost
