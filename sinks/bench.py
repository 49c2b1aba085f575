"""`soundscape bench sink`: results per second into PostgreSQL, on this machine.

A result is one chunk row plus its detection rows. Two figures:
- database write: parsed results written batch by batch (ResultWriter alone);
- end to end: a backlog of detection messages drained by the real sink service
  (consume read-committed, parse, write, commit offsets), timed from its first consumed
  message to its last commit.
Everything happens in a scratch schema and scratch topics, removed afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Producer
from psycopg import sql
from tqdm import tqdm

from soundscape.errors import ServiceError
from soundscape.infra.kafka.topics import delete_topics, ensure_topics
from soundscape.kafka_clients import producer_config
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.connection import connect
from soundscape.sinks.sample_results import NS, detection_stream
from soundscape.sinks.service import SinkService, run_until
from soundscape.sinks.writer import ResultBatch, ResultWriter

_TOPICS = ("audio", "detections", "audio_dlq", "heartbeats", "drift", "results_dlq")


def scratch_settings(settings: Settings, suffix: str, batch_size: int | None) -> Settings:
    topics = settings.topics.model_copy(
        update={name: f"{getattr(settings.topics, name)}.bench-{suffix}" for name in _TOPICS}
    )
    sink = settings.sink.model_copy(
        update={"batch_size": batch_size or settings.sink.batch_size, "maintenance_interval_s": 0}
    )
    return settings.model_copy(update={"topics": topics, "sink": sink})


def _batches(count: int, size: int, stations: int, start_ns: int, detections: int,
             first: int) -> Iterator[list[Any]]:
    stream = detection_stream(count, stations, start_ns, detections=detections, first=first)
    batch: list[Any] = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_sink_bench(
    settings: Settings,
    results: int = 100_000,
    detections: int = 3,
    stations: int = 50,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    schema = f"bench_{suffix}"
    bench = scratch_settings(settings, suffix, batch_size)
    size = bench.sink.batch_size
    start_ns = (time.time_ns() // NS - 7 * 86_400) * NS  # last week: partitions exist
    with connect(settings) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    ensure_topics(bench)
    try:
        migrate.upgrade(bench, schema=schema)
        writer = ResultWriter(bench, schema=schema, application_name="soundscape-bench")
        writer.maintain()
        write_s = 0.0
        bar = tqdm(total=results, desc="database write", unit="result", disable=not progress)
        for batch in _batches(results, size, stations, start_ns, detections, first=0):
            started = time.perf_counter()
            writer.write(ResultBatch(batch))
            write_s += time.perf_counter() - started
            bar.update(len(batch))
        bar.close()
        writer.close()

        publish_s = _publish(bench, results, stations, start_ns, detections, progress)
        service = SinkService(bench, schema=schema, group_id=f"soundscape-bench-{suffix}")
        marks: dict[str, float] = {}

        def drained(s: SinkService) -> bool:
            if "first" not in marks and s.stats.consumed:
                marks["first"] = time.perf_counter()
            return s.stats.stored + s.stats.duplicates >= results

        bar = tqdm(total=results, desc="sink end to end", unit="result", disable=not progress)
        runner = run_until(service, drained, timeout_s=max(120.0, results / 1000))
        while runner.is_alive():
            runner.join(0.5)
            bar.n = service.stats.stored
            bar.refresh()
        bar.close()
        finished = time.perf_counter()
        stats = service.stats
        e2e_s = finished - marks.get("first", finished)
        rows = stats.rows.chunks + stats.rows.detections
    finally:
        with connect(settings) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        delete_topics(bench, [getattr(bench.topics, name) for name in _TOPICS])
    return {
        "results": results,
        "detections_per_result": detections,
        "stations": stations,
        "batch_size": size,
        "database_write_s": round(write_s, 2),
        "database_write_results_per_s": round(results / write_s),
        "publish_s": round(publish_s, 2),
        "end_to_end_s": round(e2e_s, 2),
        "end_to_end_results_per_s": round(stats.stored / e2e_s) if e2e_s else None,
        "end_to_end_rows_per_s": round(rows / e2e_s) if e2e_s else None,
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
    }


def _publish(settings: Settings, results: int, stations: int, start_ns: int, detections: int,
             progress: bool) -> float:
    """Publish a second, distinct set of results (not yet stored) as the sink's backlog."""
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    topic = settings.topics.detections
    started = time.perf_counter()
    stream = detection_stream(results, stations, start_ns, detections=detections, first=results)
    for item in tqdm(stream, total=results, desc="publish", unit="result", disable=not progress):
        value, key = item.to_bytes(), item.station_id.encode()
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        raise ServiceError("the benchmark's messages were not all acknowledged by Kafka",
                           hint="is the broker up? `soundscape infra status`")
    return time.perf_counter() - started
