"""Front-end throughput: the ONNX graph against noisereduce + librosa, in one run.

Both forms get the same synthetic soundscape chunks; each is warmed up first (ONNX
Runtime's constant folding, librosa's first-call caches) and then timed over all of
them. The ONNX form runs in batches on every provider it is given (the CPU always, the
GPU where onnxruntime-gpu sees one); the reference runs chunk by chunk, as the seed did.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np

from soundscape.models.frontend.params import FEATURES, FeatureParams
from soundscape.models.frontend.reference import reference_features
from soundscape.models.frontend.runtime import FrontEnd
from soundscape.synthetic import soundscape_chunks


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate(run: Callable[[], object], chunks: int, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return chunks * repeats / (time.perf_counter() - start)


def _onnx_rate(frontend: FrontEnd, pcm: np.ndarray, batch: int, repeats: int) -> float:
    frontend.run(pcm[:batch])  # warm-up: allocations, folded constants

    def all_batches() -> None:
        for start in range(0, len(pcm), batch):
            frontend.run(pcm[start : start + batch])

    return _rate(all_batches, len(pcm), repeats)


def run_bench(
    chunks: int = 32,
    batch: int = 16,
    threads: int = 0,
    repeats: int = 1,
    model: str | None = None,
    seed: int = 0,
    params: FeatureParams = FEATURES,
) -> dict[str, object]:
    """chunks/s of each form and their ratio, plus what they ran on."""
    import onnxruntime as ort

    pcm = np.stack([c.audio for c in soundscape_chunks(chunks, seed)])
    results: dict[str, object] = {
        "chunks": chunks,
        "batch": batch,
        "repeats": repeats,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
    }
    cpu = FrontEnd(model, params, providers=["CPUExecutionProvider"], threads=threads)
    results["onnx_cpu_threads"] = threads or os.cpu_count()
    results["onnx_cpu_chunks_per_s"] = _onnx_rate(cpu, pcm, batch, repeats)

    reference_features(pcm[0], params)  # warm-up: librosa's filterbank cache, imports
    results["reference_chunks_per_s"] = _rate(
        lambda: [reference_features(row, params) for row in pcm], chunks, repeats
    )
    results["reference_threads"] = 1
    results["cpu_ratio"] = results["onnx_cpu_chunks_per_s"] / results["reference_chunks_per_s"]

    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = FrontEnd(model, params, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        results["onnx_gpu_chunks_per_s"] = _onnx_rate(gpu, pcm, batch, repeats)
        results["gpu_ratio"] = results["onnx_gpu_chunks_per_s"] / results["reference_chunks_per_s"]
    else:
        results["onnx_gpu_chunks_per_s"] = None
        results["gpu_note"] = "no CUDA provider here (onnxruntime-gpu and a GPU are needed)"
    return results
