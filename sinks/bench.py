"""`soundscape bench sink`: results per second into PostgreSQL, on this machine.

A result is one chunk row plus its detection rows. Two figures, and their ratio:
- database write: parsed results written batch by batch (ResultWriter alone);
- end to end: a backlog of detection messages drained by the real sink service
  (consume read-committed, parse, write, commit offsets), timed from its first consumed
  message to its last commit.
Both also report CPU time per result, of this Python process and of the PostgreSQL
backend (when the server is local): throughput on a busy, shared machine depends on
what else runs; the CPU cost per result does not, and sizes a deployment.
Everything happens in a scratch schema and scratch topics, removed afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from tqdm import tqdm

from soundscape.errors import ServiceError
from soundscape.kafka_topics import delete_topics, ensure_topics, scratch_topics
from soundscape.kafka_clients import producer_config
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import NS, detection_stream, register_sample_bundle
from soundscape.sinks.service import SinkService, run_until
from soundscape.sinks.writer import ResultBatch, ResultWriter

def scratch_settings(settings: Settings, suffix: str, batch_size: int | None) -> Settings:
    bench = scratch_topics(settings, suffix)
    sink = bench.sink.model_copy(
        update={"batch_size": batch_size or bench.sink.batch_size, "maintenance_interval_s": 0}
    )
    return bench.model_copy(update={"sink": sink})


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


def time_writer(writer: ResultWriter, results: int, size: int, stations: int, start_ns: int,
                detections: int, first: int, progress: bool) -> tuple[float, float]:
    """Write `results` sample results batch by batch (the writer alone, no Kafka): the
    seconds spent in the writes, and this process's CPU seconds in them."""
    write_s = write_cpu = 0.0
    bar = tqdm(total=results, desc="database write", unit="result", disable=not progress)
    for batch in _batches(results, size, stations, start_ns, detections, first=first):
        started, cpu = time.perf_counter(), time.process_time()
        writer.write(ResultBatch(batch))
        write_s += time.perf_counter() - started
        write_cpu += time.process_time() - cpu
        bar.update(len(batch))
    bar.close()
    return write_s, write_cpu


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
    ensure_topics(bench)
    try:
        with migrate.scratch_schema(bench, schema):
            register_sample_bundle(bench, schema=schema)
            writer = ResultWriter(bench, schema=schema, application_name="soundscape-bench")
            writer.maintain()
            server = CpuClock(writer.connection().info.backend_pid)
            write_s, write_cpu = time_writer(writer, results, size, stations, start_ns,
                                             detections, first=0, progress=progress)
            write_server_cpu = server.elapsed()
            writer.close()

            publish_s = publish_backlog(bench, results, stations, start_ns, detections, progress)
            service = SinkService(bench, schema=schema, group_id=f"soundscape-bench-{suffix}")
            marks: dict[str, float] = {}

            clocks: dict[str, CpuClock] = {}

            def drained(s: SinkService) -> bool:
                if "first" not in marks and s.stats.consumed:
                    marks["first"], marks["cpu"] = time.perf_counter(), time.process_time()
                    clocks["server"] = CpuClock(s.database_backend_pid())
                done = s.stats.stored + s.stats.duplicates >= results
                if done:
                    marks["cpu"] = time.process_time() - marks.get("cpu", time.process_time())
                    marks["server_cpu"] = clocks["server"].elapsed() if clocks else None  # type: ignore[assignment]
                return done

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
            rows = stats.written.chunks + stats.written.detections
    finally:
        delete_topics(bench, bench.topics.all_names())
    return {
        "results": results,
        "detections_per_result": detections,
        "stations": stations,
        "batch_size": size,
        "database_write_s": round(write_s, 2),
        "database_write_results_per_s": round(results / write_s),
        "database_write_python_cpu_us_per_result": round(write_cpu / results * 1e6, 1),
        "database_write_server_cpu_us_per_result": _per_result(write_server_cpu, results),
        "publish_s": round(publish_s, 2),
        "end_to_end_s": round(e2e_s, 2),
        "end_to_end_results_per_s": round(stats.stored / e2e_s) if e2e_s else None,
        # the two figures of one run, on one machine in one state: compare this, not
        # figures of different runs, on a shared machine
        "end_to_end_vs_writer": round(stats.stored / e2e_s / (results / write_s), 2)
        if e2e_s and write_s else None,
        "end_to_end_rows_per_s": round(rows / e2e_s) if e2e_s else None,
        "end_to_end_python_cpu_us_per_result": _per_result(marks.get("cpu"), stats.stored),
        "end_to_end_server_cpu_us_per_result": _per_result(marks.get("server_cpu"), stats.stored),
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
    }


class CpuClock:
    """CPU seconds a local process (the PostgreSQL backend) spends from now on."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start = self._read()

    def _read(self) -> float | None:
        if self.pid is None:
            return None
        try:  # fields 14 and 15 of /proc/<pid>/stat: user and system time in ticks
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None  # a remote server
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def elapsed(self) -> float | None:
        now = self._read()
        return None if now is None or self.start is None else now - self.start


def _per_result(seconds: float | None, count: int) -> float | None:
    return round(seconds / count * 1e6, 1) if seconds is not None and count else None


def publish_backlog(settings: Settings, results: int, stations: int, start_ns: int,
                    detections: int, progress: bool, first: int | None = None) -> float:
    """Publish `results` distinct results (numbered from `first`, by default after those the
    writer alone stored), the sink's backlog; seconds it took."""
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    topic = settings.topics.detections
    started = time.perf_counter()
    stream = detection_stream(results, stations, start_ns, detections=detections,
                              first=results if first is None else first)
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
