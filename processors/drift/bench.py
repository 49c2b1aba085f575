"""`soundscape bench drift`: how many chunks a second the drift checks follow.

Two figures, from the same synthetic stations (steady soundscapes, windows and
thresholds from the settings):
- checks alone: StationDrift fed in-process (the logic both the stream and the batch
  checks run), wall time and CPU per chunk;
- stream end to end: a backlog of detection messages in scratch topics drained by
  `soundscape drift run` as a child process (consume read-committed, parse, state in
  RocksDB and changelogs, reports, transactional commits), timed from its first
  processed message to its last by polling its /healthz; CPU per chunk of that process.
A station sends 0.1 chunks a second, so stations followed = chunks/s x 10. Scratch
topics, consumer group and state folder are removed afterwards.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from soundscape.errors import ServiceError
from soundscape.kafka_topics import delete_topics, ensure_topics, scratch_topics
from soundscape.observability import free_port
from soundscape.messages import Detection
from soundscape.processors.drift import scenarios as sc
from soundscape.processors.drift.publish import publish
from soundscape.processors.drift.station import DictPaneStore, StationDrift, StationMeta
from soundscape.processors.drift.stream import PANES_TABLE, STATIONS_TABLE
from soundscape.processors.drift.summary import NS, Observation
from soundscape.settings import Settings, settings_env

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def messages(chunks: int, stations: int, start_ns: int) -> list[Detection]:
    per_station = max(1, chunks // stations)
    streams = [sc.station_stream(f"bench-{i:03d}", start_ns, [sc.Segment(per_station, sc.NORMAL)])
               for i in range(stations)]
    return list(heapq.merge(*streams, key=lambda d: (d.chunk_start, d.station_id)))


def checks_alone(settings: Settings, batch: list[Detection]) -> dict[str, float]:
    observations = [Observation.from_detection(m) for m in batch]
    states: dict[str, StationDrift] = {}
    reports = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for obs in observations:
        state = states.get(obs.station_id)
        if state is None:
            state = states[obs.station_id] = StationDrift(
                StationMeta(obs.station_id), DictPaneStore(), settings.drift)
        reports += len(state.ingest(obs).reports)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"chunks_per_s": round(len(batch) / wall), "cpu_us_per_chunk": round(cpu / len(batch) * 1e6, 1),
            "reports": reports}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _processed(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return int(json.load(answer).get("processed", 0))
    except OSError:
        return 0


def stream_end_to_end(settings: Settings, batch: list[Detection], progress: bool,
                      timeout_s: float = 600) -> dict[str, float]:
    suffix = uuid.uuid4().hex[:8]
    bench = scratch_topics(settings, suffix)
    state = Path(tempfile.mkdtemp(prefix="soundscape-drift-bench-"))
    app_id = f"soundscape-drift-bench-{suffix}"
    bench = bench.model_copy(update={"drift": bench.drift.model_copy(
        update={"app_id": app_id, "data_dir": state})})
    port = free_port()
    ensure_topics(bench)
    child = None
    try:
        publish(bench, bench.topics.detections, batch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSCAPE_")}
        env |= settings_env(bench) | {"SOUNDSCAPE_METRICS_PORT": str(port),
                                      "SOUNDSCAPE_LOG_LEVEL": "warning"}
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "soundscape", "drift", "run"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = first_cpu = None
        with tqdm(total=len(batch), desc="drift run", unit="chunk", disable=not progress) as bar:
            done = 0
            while done < len(batch):
                if child.poll() is not None:
                    raise ServiceError("drift run stopped during the benchmark: "
                                       + (child.stderr.read() if child.stderr else b"")
                                       .decode(errors="replace")[-2000:])
                if time.monotonic() - started > timeout_s:
                    raise ServiceError(f"drift run did not finish in {timeout_s:.0f} s")
                now = _processed(port)
                if now and first is None:
                    first, first_cpu, base = time.monotonic(), _cpu_seconds(child.pid), now
                bar.update(now - done)
                done = now
                time.sleep(0.05)
        elapsed = time.monotonic() - (first or started)
        cpu = _cpu_seconds(child.pid) - (first_cpu or 0.0)
        counted = len(batch) - (base if first is not None else 0)
        return {"startup_s": round((first or started) - started, 1),
                "chunks_per_s": round(counted / elapsed) if elapsed else 0,
                "cpu_us_per_chunk": round(cpu / max(counted, 1) * 1e6, 1)}
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
        internal = [f"{app_id}-{t}-changelog" for t in (STATIONS_TABLE, PANES_TABLE)]
        delete_topics(bench, [*bench.topics.all_names(), *internal,
                              f"{app_id}-__assignor-__leader"])
        shutil.rmtree(state, ignore_errors=True)


def run_drift_bench(settings: Settings, chunks: int = 30_000, stations: int = 20,
                    progress: bool = True) -> dict[str, Any]:
    start_ns = (time.time_ns() // NS - 7 * 86_400) * NS
    batch = messages(chunks, stations, start_ns)
    alone = checks_alone(settings, batch)
    stream = stream_end_to_end(settings, batch, progress)
    return {
        "chunks": len(batch), "stations": stations,
        "window_s": settings.drift.window_s, "hop_s": settings.drift.hop_s,
        "checks_alone": alone, "stream": stream,
        "stations_followed_by_one_stream_worker": stream["chunks_per_s"] * 10,
        "load_average": round(os.getloadavg()[0], 2),
    }
