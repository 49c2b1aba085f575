"""What a station costs per chunk: CPU time of capture, resampling, FLAC, spool, publish.

Runs the real station pipeline against the configured broker, with a device-like source
(audio prepared up front and handed over in 100 ms blocks, as a capture callback does)
or the real microphone (real time: 10 s per chunk). Stage times are the pipeline
threads' own CPU time; `process_cpu_ms_per_chunk` is the whole process's (librdkafka's
threads, the capture callback and the heartbeat thread included) in steady state, the
figure to compare with the 10 s of one core a chunk may take at most.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from soundscape.producers.chunker import CHUNK_SAMPLES, MODEL_RATE
from soundscape.producers.sources import AudioSource, DeviceLikeSource, MicSource
from soundscape.producers.station import Station
from soundscape.settings import Settings


def bench_station(
    settings: Settings,
    chunks: int,
    capture_rate: int,
    source: str = "prepared",
    device: str | None = None,
    codec: str = "flac",
) -> dict[str, Any]:
    """Steady state: process CPU is timed from the first chunk spooled to the last, so
    start-up (imports, opening the device, connecting) is left out of the per-chunk figure.
    """
    audio: AudioSource = (
        MicSource(device, capture_rate) if source == "mic" else DeviceLikeSource(capture_rate)
    )
    marks: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="soundscape-bench-") as tmp:
        station_settings = settings.station.model_copy(
            update={"data_dir": Path(tmp), "codec": codec, "heartbeat_interval_s": 3600.0}
        )
        run_settings = settings.model_copy(update={"station": station_settings})
        station = Station(run_settings, "bench", audio, max_chunks=chunks + 1,
                          drain_timeout_s=300)
        station.on_stored = lambda count: marks.setdefault(count, time.process_time())
        wall = time.monotonic()
        report = station.run()
        wall = time.monotonic() - wall
    done = max(report["chunks_captured"], 1)
    timed = len(marks) - 1
    steady = (marks[max(marks)] - marks[min(marks)]) / timed if timed > 0 else float("nan")
    stages = {f"{k}_cpu_ms_per_chunk": round(v * 1000 / done, 2)
              for k, v in sorted(report["cpu_s"].items())}
    return {
        "source": audio.description,
        "capture_rate": audio.sample_rate,
        "codec": codec,
        "chunks": timed,
        "chunks_acked": report["chunks_acked"],
        "mean_chunk_kb": round(report["bytes_captured"] / done / 1e3, 1),
        **stages,
        "process_cpu_ms_per_chunk": round(steady * 1000, 2),
        "cpu_share_of_real_time": round(steady / (CHUNK_SAMPLES / MODEL_RATE), 4),
        "wall_s": round(wall, 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}",
    }
