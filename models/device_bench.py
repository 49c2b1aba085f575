"""`soundscape bench device`: one run that says what a device does with the bundles, and
how that compares with the seed's way of working, measured rather than assumed.

For every bundle given (typically the full-size fp32 bundle and its fp16 and int8
variants), on the device chosen (CUDA on a GPU host; the CPU provider anywhere, so the
benchmark runs in a test and cannot rot):

- PCM to probabilities (front-end, embedder, branches, meta model) at each batch size,
  and the single-chunk latency (p50, p99): `models bench --audio`'s measurement;
- the seed's setup: features precomputed, embedder left out (`score` on mel, mel_aug,
  waveform and a ready embedding), at each batch size;
- the seed-style baseline: each chunk alone, its features computed on the CPU with the
  librosa reference, then the graphs run one after another for that chunk; chunks/s, and
  the ratio of the best batched PCM-to-probabilities figure to it;
- GPU memory in use after the runs (nvidia-smi), when there is a GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import EMBEDDER
from soundscape.fusion import FusionModel
from soundscape.models.bench import BenchOptions, bench, measure
from soundscape.models.frontend.reference import reference_features
from soundscape.models.samples import HELD_OUT_SEED, synthetic_pcm

Progress = Callable[[str], None]


def gpu_memory_mb() -> list[int] | None:
    """MiB in use per GPU, from nvidia-smi; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return None
    return [int(line) for line in done.stdout.split() if line.strip().isdigit()]


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def seed_baseline(model: FusionModel, pcm: np.ndarray) -> dict[str, float]:
    """Chunk by chunk: librosa features on the CPU, then the graphs in turn for that chunk."""
    model.score({n: a[None] for n, a in reference_features(pcm[0]).items()})  # warm-up
    started = time.perf_counter()
    features_s = 0.0
    for clip in pcm:
        begun = time.perf_counter()
        features = reference_features(clip)
        features_s += time.perf_counter() - begun
        model.score({n: a[None] for n, a in features.items()})
    seconds = time.perf_counter() - started
    return {"chunks": len(pcm), "chunks_per_s": len(pcm) / seconds,
            "features_share": features_s / seconds}


def _precomputed(model: FusionModel, pcm: np.ndarray) -> dict[str, np.ndarray]:
    """Branch inputs and a ready embedding for `pcm`, as the seed's setup had them."""
    features = {n: np.stack([reference_features(c)[n] for c in pcm]) for n in ("waveform", "mel", "mel_aug")}
    embedder = model._graphs[EMBEDDER]  # noqa: SLF001 - the benchmark reads one graph's output
    name = next(iter(embedder.inputs))
    embedding = embedder.session.run(None, {name: features[name]})[0]
    return features | {"embedding": np.ascontiguousarray(embedding, dtype=np.float32)}


def bench_device(paths: Sequence[Path], batch_sizes: Sequence[int], *, device: str = "auto",
                 baseline_chunks: int = 16, latency_runs: int = 30, min_seconds: float = 1.0,
                 progress: Progress = print) -> dict[str, Any]:
    options = BenchOptions(batch_sizes=tuple(batch_sizes), latency_runs=latency_runs,
                           min_seconds=min_seconds, audio=True, device=device,
                           held_out_samples=max(8, baseline_chunks))
    progress(f"PCM to probabilities, batch sizes {list(batch_sizes)}, on {device}")
    report = bench(paths, options, progress=progress)
    first = FusionModel(paths[0], device=device, max_batch=max(batch_sizes))
    features = first.bundle.manifest.features
    pcm = synthetic_pcm(baseline_chunks, HELD_OUT_SEED, features)
    progress(f"the seed's setup: features precomputed, embedder left out ({first.version})")
    pool = _precomputed(first, pcm)
    seed_setup = measure([first], pool, replace(options, audio=False), lambda x: x)[0]
    progress(f"seed-style baseline: {baseline_chunks} chunks one by one, librosa features")
    baseline = seed_baseline(first, pcm)
    best = max(t["samples_per_s"] for t in report["bundles"][0]["throughput"])
    report.update({
        "device": {"requested": device, "used": first.device, "gpu": gpu_name(),
                   "gpu_memory_used_mb": gpu_memory_mb()},
        "seed_setup_no_embedder": {"bundle": first.version, **seed_setup},
        "seed_style_baseline": baseline,
        "best_pcm_to_probabilities_per_s": best,
        "ratio_to_seed_style_baseline": best / baseline["chunks_per_s"],
    })
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The figures a person reads first."""
    device = report["device"]
    lines = [f"device: {device['used']} ({device['gpu'] or 'no GPU'}); GPU memory used: "
             f"{device['gpu_memory_used_mb']}"]
    for entry in report["bundles"]:
        rates = ", ".join(f"{t['batch']}: {t['samples_per_s']:.1f}" for t in entry["throughput"])
        lines.append(f"{entry['precision']:>5} {entry['version']}: PCM->probabilities chunks/s by "
                     f"batch {{{rates}}}; single chunk p50 {entry['latency_ms']['p50']:.1f} ms, "
                     f"p99 {entry['latency_ms']['p99']:.1f} ms")
    seed = report["seed_setup_no_embedder"]
    rates = ", ".join(f"{t['batch']}: {t['samples_per_s']:.1f}" for t in seed["throughput"])
    lines.append(f"seed's setup (features precomputed, no embedder): chunks/s by batch {{{rates}}}")
    base = report["seed_style_baseline"]
    lines.append(f"seed-style baseline: {base['chunks_per_s']:.2f} chunks/s (CPU features "
                 f"{base['features_share']:.0%} of its time); best batched PCM->probabilities "
                 f"{report['best_pcm_to_probabilities_per_s']:.1f} chunks/s = "
                 f"{report['ratio_to_seed_style_baseline']:.1f}x")
    return lines
