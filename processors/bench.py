"""`soundscape bench pipeline`: sustained scoring throughput through the real broker.

Chunks are published first (to topics of the run's own), then workers in one consumer
group score them as fast as they can; the figures come from the detections themselves
(consumed, scored and published times), so they measure the pipeline, not the harness.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.kafka_clients import consumer_config
from soundscape.messages import Detection, parse
from soundscape.synthetic.chunks import generated_chunks
from soundscape.settings import Settings

STATION_CHUNKS_PER_S = 0.1  # one 10 s chunk every 10 s


@dataclass
class PipelineFigures:
    bundle: str
    chunks: int
    workers: int
    batch_size: int
    seconds: float
    chunks_per_s: float
    stations_served: int
    latency_ms: dict[str, float]
    batch_sizes_mean: float
    #: How the workers' front-end ran: "fft", "graph", or None (a windowed bundle).
    frontend_path: str | None = None
    #: Lanes each worker's model split its batches across (None: a windowed bundle).
    lanes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stations_served(chunks_per_s: float) -> int:
    """Stations (one chunk per 10 s each) a rate serves in real time; from the rate as
    printed, and rounded before the floor: 12.1 / 0.1 is 120.99999999999999 in floats."""
    return int(round(chunks_per_s / STATION_CHUNKS_PER_S, 6))


def bench_pipeline(settings: Settings, bundle: Path, chunks: int, workers: int = 1,
                   progress: bool = True, frontend_path: str | None = None) -> PipelineFigures:
    """`frontend_path` (auto, fft, graph) overrides settings.frontend.frontend_path."""
    from tqdm import tqdm

    from soundscape.kafka_topics import delete_topics, ensure_topics
    from soundscape.processors.scoring import ModelScorer
    from soundscape.processors.worker import InferenceWorker

    run = uuid.uuid4().hex[:8]
    topics = settings.topics.model_copy(update={
        "audio": f"bench.{run}.audio", "detections": f"bench.{run}.detections",
        "audio_dlq": f"bench.{run}.dlq", "heartbeats": f"bench.{run}.heartbeats",
        "drift": f"bench.{run}.drift", "results_dlq": f"bench.{run}.results-dlq",
        "shadow_detections": f"bench.{run}.shadow",
    })
    worker_settings = settings.worker.model_copy(update={"group_id": f"bench-{run}"})
    settings = settings.model_copy(update={"topics": topics, "worker": worker_settings})
    if frontend_path is not None:
        settings = settings.model_copy(update={"frontend": settings.frontend.model_copy(
            update={"frontend_path": frontend_path})})
    ensure_topics(settings)
    try:
        publisher = ChunkPublisher(settings)
        start_ns = 1_700_000_000 * 10**9
        for envelope, payload in tqdm(generated_chunks(chunks, 16, start_ns), total=chunks,
                                      desc="publish", unit="chunk", disable=not progress):
            publisher.publish(envelope, payload)
        publisher.flush()

        scorers = [ModelScorer.load(bundle, settings) for _ in range(workers)]
        pool = [InferenceWorker(settings, s, worker_id=f"bench-{i}") for i, s in enumerate(scorers)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,)) for w in pool]
        bar = tqdm(total=chunks, desc="score", unit="chunk", disable=not progress)
        for thread in threads:
            thread.start()
        try:
            while sum(w.stats.scored + w.stats.dead_lettered for w in pool) < chunks:
                if not any(t.is_alive() for t in threads):
                    raise RuntimeError("bench workers stopped early; see the log above")
                bar.update(sum(w.stats.scored for w in pool) - bar.n)
                time.sleep(0.2)
            bar.update(chunks - bar.n)
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
            bar.close()
        detections = _read_detections(settings, chunks)
    finally:
        delete_topics(settings, topics.all_names())

    consumed = np.array([d.timing.consumed_at for d in detections], dtype=np.float64)
    scored = np.array([d.timing.scored_at for d in detections], dtype=np.float64)
    # From the first batch's consumption to the last batch's scoring: the sustained rate.
    seconds = max((scored.max() - consumed.min()) / 1e9, 1e-9)
    per_s = len(detections) / seconds
    queue_and_score = (scored - consumed) / 1e6
    return PipelineFigures(
        bundle=scorers[0].version,
        chunks=len(detections),
        workers=workers,
        batch_size=settings.worker.batch_size,
        seconds=round(seconds, 2),
        chunks_per_s=round(per_s, 2),
        stations_served=stations_served(round(per_s, 2)),
        latency_ms={
            "consumed_to_scored_p50": round(float(np.percentile(queue_and_score, 50)), 1),
            "consumed_to_scored_p95": round(float(np.percentile(queue_and_score, 95)), 1),
            "consumed_to_scored_p99": round(float(np.percentile(queue_and_score, 99)), 1),
        },
        batch_sizes_mean=round(float(np.mean([d.batch_size for d in detections])), 1),
        frontend_path=getattr(scorers[0].model, "frontend_path", None),
        lanes=getattr(scorers[0].model, "lanes", None),
    )


def compare_frontend(settings: Settings, bundle: Path, chunks: int, workers: int = 1,
                     progress: bool = True, rounds: int = 1) -> dict[str, Any]:
    """The same chunks through the broker with the front-end as the MatMul graph
    (frontend.onnx), then on the real FFT (soundscape/frontend_fft.py), each on fresh topics;
    `rounds` > 1 alternates them that many times (on a shared machine the load drifts
    between runs) and reports the median of each. chunks/s of both and fft / graph."""
    variants = {path: settings.model_copy(update={"frontend": settings.frontend.model_copy(
        update={"frontend_path": path})}) for path in ("graph", "fft")}
    found = _compare(variants, bundle, chunks, workers, progress, rounds)
    found["fft_path_ran"] = found["fft"]["frontend_path"]
    return found


def compare_lanes(settings: Settings, bundle: Path, chunks: int, lanes: tuple[int, int],
                  workers: int = 1, progress: bool = True, rounds: int = 1) -> dict[str, Any]:
    """The same chunks with `models.lanes` at lanes[0], then lanes[1] (see
    compare_frontend); the ratio is the second's chunks/s over the first's."""
    variants = {f"lanes_{n}": settings.model_copy(update={"models": settings.models.model_copy(
        update={"lanes": n})}) for n in lanes}
    if len(variants) != 2:
        raise ValueError("compare two different lane counts, e.g. 1,2")
    return _compare(variants, bundle, chunks, workers, progress, rounds)


def _compare(variants: dict[str, Settings], bundle: Path, chunks: int, workers: int,
             progress: bool, rounds: int) -> dict[str, Any]:
    """Each variant's run alternated `rounds` times; medians, and the second over the first."""
    runs: dict[str, list[PipelineFigures]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, found in runs.items():
            found.append(bench_pipeline(variants[name], bundle, chunks, workers, progress))
    rate = {name: float(np.median([f.chunks_per_s for f in found])) for name, found in runs.items()}
    first, second = list(variants)
    return {
        "bundle": runs[first][0].bundle,
        "chunks": chunks,
        "workers": workers,
        "batch_size": runs[first][0].batch_size,
        "rounds": rounds,
        **{f"{name}_chunks_per_s": round(rate[name], 2) for name in variants},
        "ratio": round(rate[second] / rate[first], 2),
        **{f"{name}_runs": [float(f.chunks_per_s) for f in runs[name]] for name in variants},
        **{name: runs[name][-1].as_dict() for name in variants},
    }


def _read_detections(settings: Settings, expected: int, timeout_s: float = 120) -> list[Detection]:
    consumer = Consumer(consumer_config(settings, f"bench-reader-{time.time_ns()}"))
    consumer.subscribe([settings.topics.detections])
    found: dict[str, Detection] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is None:
                    detection = parse(Detection, msg.value())
                    found[str(detection.chunk_id)] = detection
    finally:
        consumer.close()
    return list(found.values())


def graph_rate(bundle: Path, chunks: int = 32, threads: int = 0) -> dict[str, float]:
    """A windowed bundle's graph alone, on PCM already at its rate: ms per 10 s chunk on
    `threads` threads (0: onnxruntime's default, one per core) and chunks/s; best of 3."""
    from soundscape.windowed import WindowedModel

    model = WindowedModel(bundle, device="cpu", intra_op_threads=threads)
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((chunks, model.sample_rate * 10)) * 0.05).astype(np.float32)
    model.score_chunks(pcm[:2])  # warm-up
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        model.score_chunks(pcm)
        best = min(best, time.perf_counter() - began)
    return {"ms_per_chunk": round(best / chunks * 1e3, 1), "chunks_per_s": round(chunks / best, 2)}


def bench_windowed(settings: Settings, bundle: Path, baseline: Path, chunks: int,
                   progress: bool = True) -> dict[str, Any]:
    """A windowed bundle (BirdNET) beside a baseline bundle (the demo's) in one run: the
    graph alone on one thread and on all cores, then both through the broker and a worker."""
    one = graph_rate(bundle, chunks=8, threads=1)
    every = graph_rate(bundle, chunks=min(chunks, 64))
    through = bench_pipeline(settings, bundle, chunks, progress=progress)
    base = bench_pipeline(settings, baseline, chunks, progress=progress)
    return {
        "bundle": through.bundle,
        "graph_1_thread_ms_per_chunk": one["ms_per_chunk"],
        "graph_all_cores_chunks_per_s": every["chunks_per_s"],
        "broker_chunks_per_s": through.chunks_per_s,
        "broker_share_of_graph": round(through.chunks_per_s / every["chunks_per_s"], 3),
        "stations_served": through.stations_served,
        "baseline_bundle": base.bundle,
        "baseline_broker_chunks_per_s": base.chunks_per_s,
        "chunks": chunks,
        "batch_size": through.batch_size,
        "latency_ms": through.latency_ms,
    }
