"""Benchmark bundles: single-sample latency, throughput per batch size, size on disk.

Several bundles in one run (an fp32 bundle and its int8 variant, say) are measured on
the same machine, inputs and settings, and each later one is compared with the first:
speed ratio per batch size and top-1 agreement on a held-out set.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import BRANCHES, EMBEDDER, FRONTEND, META, load_bundle
from soundscape.errors import UserError
from soundscape.fusion import FusionModel
from soundscape.models.quantize import compare
from soundscape.models.samples import HELD_OUT_SEED, SampleSet, onnx_frontend, sample_set, synthetic_pcm

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The "five graphs" of the seed's size figure: the four branches and the meta model.
FIVE_GRAPHS = (*BRANCHES, META)

Bar = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class BenchOptions:
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    latency_runs: int = 30
    min_seconds: float = 1.0
    min_runs: int = 3  # per bundle and batch size; the median run decides
    audio: bool = False  # score PCM through the front-end instead of branch inputs
    device: str = "auto"
    threads: int = 0
    held_out: Path | None = None
    held_out_samples: int = 128


def size_mb(bundle_path: Path) -> dict[str, float]:
    sizes = load_bundle(bundle_path, verify_hashes=False).sizes()
    five = sum(sizes[r] for r in FIVE_GRAPHS)
    return {
        "five_graphs": five / 1e6,
        "embedder": sizes[EMBEDDER] / 1e6,
        "frontend": sizes.get(FRONTEND, 0) / 1e6,
        "total": sum(sizes.values()) / 1e6,
    }


def _tile(pool: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """`rows` items cycled from the pool, as contiguous arrays."""
    index = np.arange(rows) % len(next(iter(pool.values())))
    return {name: np.ascontiguousarray(array[index]) for name, array in pool.items()}


def _runner(model: FusionModel, audio: bool) -> Callable[[dict[str, np.ndarray]], dict[str, float]]:
    def run(feeds: dict[str, np.ndarray]) -> dict[str, float]:
        result = model.score_audio(feeds["pcm"]) if audio else model.score(feeds)
        if result.errors:
            raise RuntimeError(f"benchmark inputs were refused: {result.errors}")
        return {**result.timings, "whole_call": result.seconds}

    return run


def measure(models: Sequence[FusionModel], pool: dict[str, np.ndarray], options: BenchOptions,
            bar: Bar) -> list[dict[str, Any]]:
    """Latency percentiles at batch 1 and samples/s per batch size, for every model.

    Runs are interleaved across the models (one each, in turn), so a machine shared with
    other work slows them alike; throughput is taken from the median run.
    """
    runners = [_runner(model, options.audio) for model in models]
    single = _tile(pool, 1)
    latencies: list[list[float]] = [[] for _ in models]
    for run in runners:
        run(single)
    for _ in range(options.latency_runs):
        for run, times in zip(runners, latencies):
            started = time.perf_counter()
            run(single)
            times.append((time.perf_counter() - started) * 1e3)
    results = [{"latency_ms": {"p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)),
                               "p99": float(np.percentile(t, 99)), "runs": len(t)},
                "throughput": []} for t in latencies]
    for batch in bar(options.batch_sizes):
        feeds = _tile(pool, batch)
        for run in runners:
            run(feeds)  # warm-up: sessions size their arenas, buffers grow
        durations: list[list[float]] = [[] for _ in models]
        stage_totals: list[dict[str, float]] = [{} for _ in models]
        while (len(durations[0]) < options.min_runs
               or min(sum(d) for d in durations) < options.min_seconds):
            for run, spent, stages in zip(runners, durations, stage_totals):
                started = time.perf_counter()
                timings = run(feeds)
                spent.append(time.perf_counter() - started)
                for stage, seconds in timings.items():
                    stages[stage] = stages.get(stage, 0.0) + seconds
        for result, spent, stages in zip(results, durations, stage_totals):
            result["throughput"].append({"batch": batch, "runs": len(spent),
                                         "samples_per_s": batch / float(np.median(spent))})
            result["ms_per_sample_by_stage_at_largest_batch"] = {
                stage: seconds * 1e3 / (len(spent) * batch) for stage, seconds in stages.items()}
    return results


def bench(paths: Sequence[Path], options: BenchOptions, bar: Bar = lambda x: x,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every bundle in `paths`; later ones are compared with the first."""
    import onnxruntime

    say = progress or (lambda _message: None)
    load = [round(x, 2) for x in os.getloadavg()]
    first = load_bundle(paths[0])
    if options.audio and not first.has_frontend:
        raise UserError(f"{first.root}: --audio needs a bundle with a front-end graph")
    features = first.manifest.features
    frontend = onnx_frontend(first.path(FRONTEND)) if first.has_frontend else None
    held: SampleSet = sample_set(options.held_out, options.held_out_samples, HELD_OUT_SEED,
                                 features, frontend)
    say(f"inputs: {held.source}")
    pool = ({"pcm": synthetic_pcm(min(len(held), 32), HELD_OUT_SEED, features)} if options.audio
            else {n: a[:32] for n, a in held.arrays.items()})
    models = [FusionModel(path, device=options.device, intra_op_threads=options.threads,
                          max_batch=max(options.batch_sizes)) for path in paths]
    for path, model in zip(paths, models):
        say(f"{path}: {model.version} ({model.bundle.manifest.precision}) on {model.device}")
    measured = measure(models, pool, options, bar)
    entries = []
    reference: np.ndarray | None = None
    for path, model, figures in zip(paths, models, measured):
        entry: dict[str, Any] = {
            "path": str(path), "version": model.version,
            "precision": model.bundle.manifest.precision, "device": model.device,
            "num_classes": model.bundle.manifest.num_classes, "size_mb": size_mb(path),
            **figures,
        }
        probabilities = np.concatenate([model.score(part).probabilities
                                        for part in held.batches(32)])
        if reference is None:
            reference = probabilities
        else:
            base = entries[0]
            figures = compare(reference, probabilities)
            entry["vs_first"] = {
                "top1_agreement": figures["top1"],
                "top1_in_top5": figures["top1_in_top5"],
                "mean_abs_diff": figures["mean_abs_diff"],
                "samples": len(held),
                "speedup_by_batch": {
                    str(mine["batch"]): mine["samples_per_s"] / theirs["samples_per_s"]
                    for mine, theirs in zip(entry["throughput"], base["throughput"])
                },
                "latency_p50_ratio": base["latency_ms"]["p50"] / entry["latency_ms"]["p50"],
            }
        entries.append(entry)
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "onnxruntime": onnxruntime.__version__,
                    "load_average_at_start": load,
                    "threads": options.threads or "onnxruntime default"},
        "inputs": "pcm through the front-end" if options.audio else "branch inputs",
        "held_out": held.source,
        "batch_sizes": list(options.batch_sizes),
        "bundles": entries,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
