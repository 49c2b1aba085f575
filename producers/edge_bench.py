"""What scoring on the station costs: CPU time per 10 s chunk with one thread.

The station's own scoring code (EdgeModel.score: front-end, graphs, audio statistics,
the message and its signature) on real-length chunks, one at a time from PCM, as the
station's scoring thread runs it; decoding the chunk's FLAC (what scoring a spooled
chunk would add) is timed apart. Per chunk: the process's CPU time (every thread the
call uses), the calling thread's own, and the wall time. The first chunk (sessions
warming up) is reported on its own and left out of the percentiles.

The goal is the seed's Pi budget: under 200 ms of CPU per chunk on one core. This
machine's core is not a Pi's (a Pi 4's Cortex-A72 is several times slower), so the
figure says what the work is, not what a Pi takes.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.audio_codec import decode, encode
from soundscape.chunk_signing import ChunkSigner, new_private_key_text
from soundscape.envelope import ChunkEnvelope
from soundscape.producers.chunker import MODEL_RATE
from soundscape.producers.edge_scoring import EdgeModel, EdgeResult
from soundscape.settings import Settings
from soundscape.synthetic import chunk_seed, soundscape_chunk

GOAL_CPU_MS = 200.0
STATION = "bench-edge"
T0 = 1_714_541_400 * 10**9


def _figures(values_ms: list[float]) -> dict[str, float]:
    data = np.asarray(values_ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(data, 50)), 2),
            "p95": round(float(np.percentile(data, 95)), 2),
            "max": round(float(data.max()), 2), "mean": round(float(data.mean()), 2)}


def bench_edge(settings: Settings, bundle: Path, chunks: int, threads: int = 1,
               seed: int = 0) -> dict[str, Any]:
    """Score `chunks` synthetic 10 s chunks (plus one warm-up) one at a time."""
    audio = [soundscape_chunk(chunk_seed(seed, i)).audio for i in range(chunks + 1)]
    payloads = [encode(pcm, MODEL_RATE, "flac") for pcm in audio]
    signer = ChunkSigner.from_text(new_private_key_text(), STATION)
    loading = time.perf_counter()
    model = EdgeModel(bundle, STATION, settings, threads=threads, signer=signer)
    load_s = time.perf_counter() - loading
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    cpu, thread_cpu, wall, decode_cpu = [], [], [], []
    stages: dict[str, list[float]] = {}
    first_ms = 0.0
    for index, (pcm, payload) in enumerate(zip(audio, payloads)):
        envelope = ChunkEnvelope.for_payload(
            payload, station_id=STATION, chunk_start=T0 + index * 10**10,
            sample_rate=MODEL_RATE, codec="flac", seq=index, captured_at=time.time_ns(),
            source="live")
        began_cpu = time.process_time()
        decoded = decode(payload, "flac")
        decode_ms = (time.process_time() - began_cpu) * 1e3
        if decoded.samples.shape[0] != pcm.size:
            raise RuntimeError(f"FLAC round trip gave {decoded.samples.shape[0]} samples")
        began_cpu, began_thread, began = time.process_time(), time.thread_time(), time.perf_counter()
        result = model.score(envelope, pcm)
        elapsed = (time.perf_counter() - began) * 1e3
        spent_cpu = (time.process_time() - began_cpu) * 1e3
        spent_thread = (time.thread_time() - began_thread) * 1e3
        if not isinstance(result, EdgeResult):
            raise RuntimeError(f"the bench chunk was refused: {result}")
        if index == 0:
            first_ms = elapsed
            continue
        cpu.append(spent_cpu)
        thread_cpu.append(spent_thread)
        wall.append(elapsed)
        decode_cpu.append(decode_ms)
        for stage, ms in result.detection.timing.branch_ms.items():
            stages.setdefault(stage, []).append(ms)
    manifest = model.model.bundle.manifest
    figures = _figures(cpu)
    return {
        "bundle": str(bundle),
        "version": model.version,
        "precision": manifest.precision,
        "num_classes": manifest.num_classes,
        "frontend_path": model.model.frontend_path,
        "threads": threads,
        "chunks": chunks,
        "load_s": round(load_s, 2),
        "first_chunk_wall_ms": round(first_ms, 2),
        "cpu_ms_per_chunk": figures,
        "thread_cpu_ms_per_chunk": _figures(thread_cpu),
        "wall_ms_per_chunk": _figures(wall),
        "stage_wall_ms_p50": {stage: round(float(np.median(v)), 2) for stage, v in stages.items()},
        "decode_flac_cpu_ms": _figures(decode_cpu),
        "goal_cpu_ms": GOAL_CPU_MS,
        "under_goal": figures["p95"] < GOAL_CPU_MS,
        "cpu_share_of_real_time": round(figures["p50"] / 10_000, 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {load_at_start}",
    }
