"""`soundscape bench sink --sinks 1,2`: the same backlog drained by 1, then by N sink
processes in one consumer group, each round on topics of its own.

One sink process has one Python thread consuming and one PostgreSQL backend writing,
and each waits on the other part of the time; sink processes in one group share the
partitions, as deployments add them, and use what CPU one leaves idle. The rate is
taken once every process of the round holds partitions (the group has settled after its
joins), until 90 % of the rest is stored, so start-up and the joins' rebalances do not
count; CPU per result is that of the sink processes and of their PostgreSQL backends
over the same span. The same run first times the writer alone (one connection, parsed
results, no Kafka), the reference the end-to-end rates are given against.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from tqdm import tqdm

from soundscape.errors import ServiceError
from soundscape.kafka_topics import delete_topics, ensure_topics
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.bench import NS, CpuClock, publish_backlog, scratch_settings, time_writer
from soundscape.sinks.sample_results import register_sample_bundle
from soundscape.sinks.writer import ResultWriter

#: A round gives up after this long without reaching its results.
ROUND_TIMEOUT_S = 600.0


@dataclass
class _Shared:
    """What one sink process tells the benchmark while it runs."""

    ready: Synchronized[int]
    assigned: Synchronized[int]
    stored: Synchronized[int]
    cpu_us: Synchronized[int]
    backend_pid: Synchronized[int]


def _sink_process(settings: Settings, schema: str, group: str, shared: _Shared, go: Event,
                  stop: Event) -> None:
    """One `soundscape sink`, in a process of its own: made, then started when the
    benchmark says go (all together, so the group forms before anyone drains the backlog),
    until it says stop."""
    from soundscape.logs import configure_logging
    from soundscape.sinks.service import SinkService, run_until, tune_gc

    configure_logging(settings.log_level, settings.log_format)  # stderr, as the parent's
    tune_gc()
    # Heartbeats every 0.1 s: a member learns of the others' joins at once, not up to 3 s
    # later, while it drains the backlog alone.
    service = SinkService(settings, schema=schema, group_id=group,
                          consumer_overrides={"heartbeat.interval.ms": 100})
    shared.ready.value = 1
    if not go.wait(ROUND_TIMEOUT_S):
        return

    def report(s: SinkService) -> bool:
        health = s.health()
        shared.assigned.value = health["assigned_partitions"]
        shared.stored.value = health["stored"]
        shared.cpu_us.value = int(time.process_time() * 1e6)
        if not shared.backend_pid.value:
            shared.backend_pid.value = s.database_backend_pid() or 0
        return stop.is_set()

    run_until(service, report, timeout_s=ROUND_TIMEOUT_S + 60).join()


def run_parallel_bench(settings: Settings, sink_counts: list[int], results: int = 100_000,
                       detections: int = 3, stations: int = 50, batch_size: int | None = None,
                       progress: bool = True) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    schema = f"bench_{suffix}"
    start_ns = (time.time_ns() // NS - 7 * 86_400) * NS  # last week: partitions exist
    rounds: dict[str, dict[str, Any]] = {}
    base = scratch_settings(settings, suffix, batch_size)
    with migrate.scratch_schema(base, schema):
        register_sample_bundle(base, schema=schema)
        writer = ResultWriter(base, schema=schema, application_name="soundscape-bench")
        writer.maintain()
        seconds, _ = time_writer(writer, results, base.sink.batch_size, stations, start_ns,
                                 detections, first=len(sink_counts) * results, progress=progress)
        alone = round(results / seconds)
        writer.close()
        for k, sinks in enumerate(sink_counts):
            bench = scratch_settings(settings, f"{suffix}-{sinks}x{k}", batch_size)
            ensure_topics(bench)
            try:
                publish_backlog(bench, results, stations, start_ns, detections, progress,
                                first=k * results)
                rounds[str(sinks)] = _round(bench, schema, f"soundscape-bench-{suffix}-{k}",
                                            sinks, results, progress)
            finally:
                delete_topics(bench, bench.topics.all_names())
    one = rounds.get("1", {}).get("results_per_s")
    return {
        "results": results, "detections_per_result": detections, "stations": stations,
        "partitions": settings.topics.partitions, "sinks": rounds,
        "writer_alone_results_per_s": alone,
        # measured in one run, on one machine in one state: compare these
        "vs_one_sink": {n: round(r["results_per_s"] / one, 2) for n, r in rounds.items()}
        if one else None,
        "vs_writer_alone": {n: round(r["results_per_s"] / alone, 2) for n, r in rounds.items()},
    }


def _round(settings: Settings, schema: str, group: str, sinks: int, results: int,
           progress: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")  # no librdkafka threads inherited
    go, stop = ctx.Event(), ctx.Event()
    shared = [_Shared(*(ctx.Value("i", 0) for _ in range(3)), ctx.Value("q", 0), ctx.Value("i", 0))
              for _ in range(sinks)]
    procs = [ctx.Process(target=_sink_process, args=(settings, schema, group, s, go, stop),
                         name=f"bench-sink-{i}", daemon=True) for i, s in enumerate(shared)]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + 120
    while not all(s.ready.value for s in shared):  # imports and connections, then together
        if time.monotonic() > deadline or any(not p.is_alive() for p in procs):
            stop.set()
            raise ServiceError(f"bench sink: {sinks} sink processes did not start")
        time.sleep(0.05)
    go.set()
    bar = tqdm(total=results, desc=f"{sinks} sink(s)", unit="result", disable=not progress)
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    begin: tuple[float, int, int, list[CpuClock]] | None = None
    try:
        while True:
            if time.monotonic() > deadline or any(not p.is_alive() for p in procs):
                raise ServiceError(f"bench sink with {sinks} sinks did not finish: "
                                   f"{sum(s.stored.value for s in shared)} of {results} stored")
            stored = sum(s.stored.value for s in shared)
            bar.n = stored
            bar.refresh()
            settled = all(s.assigned.value for s in shared) and all(s.backend_pid.value
                                                                     for s in shared)
            if begin is None and settled:
                begin = (time.perf_counter(), stored, sum(s.cpu_us.value for s in shared),
                         [CpuClock(s.backend_pid.value) for s in shared])
            if begin is not None and stored >= begin[1] + 0.9 * (results - begin[1]):
                break
            time.sleep(0.02)
        span = time.perf_counter() - begin[0]
        count = stored - begin[1]
        python_us = sum(s.cpu_us.value for s in shared) - begin[2]
        server = [clock.elapsed() for clock in begin[3]]
        while sum(s.stored.value for s in shared) < results and time.monotonic() < deadline:
            time.sleep(0.05)  # the rest, so that the round leaves nothing behind
    finally:
        bar.close()
        stop.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    server_s = None if any(s is None for s in server) else sum(s for s in server if s)
    return {
        "results_per_s": round(count / span) if span > 0 else None,
        "measured_results": count,
        "measured_s": round(span, 2),
        "started_before_settled": begin[1],
        "python_cpu_us_per_result": round(python_us / count, 1) if count else None,
        "server_cpu_us_per_result": round(server_s / count * 1e6, 1)
        if server_s is not None and count else None,
        "stored": sum(s.stored.value for s in shared),
    }
