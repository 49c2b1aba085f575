"""Front-end throughput: the ONNX graph, the real-FFT form (soundscape/frontend_fft.py,
what FusionModel runs on a CPU) and noisereduce + librosa, in one run.

Both forms get the same synthetic soundscape chunks; each is warmed up first (ONNX
Runtime's constant folding, librosa's first-call caches) and then timed over all of
them. The ONNX form runs in batches (on the CPU, and on the GPU where onnxruntime-gpu
sees one); the reference runs chunk by chunk on one thread, as the seed did.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np

from soundscape.frontend_fft import FFTFrontEnd, default_threads
from soundscape.frontend_params import FEATURES, FeatureParams
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


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def run_bench(
    chunks: int = 32,
    batch: int = 16,
    threads: int = 0,
    repeats: int = 1,
    model: str | None = None,
    seed: int = 0,
    params: FeatureParams = FEATURES,
) -> dict[str, object]:
    """chunks/s of each form and their ratios, plus what they ran on.

    The forms take turns batch by batch (ONNX on all threads, ONNX on one thread, the FFT
    form on all threads and on one, the reference on the same chunks), so a change in the machine's load during the run
    affects all of them alike: on a shared machine that matters more than anything.
    """
    import onnxruntime as ort

    pcm = np.stack([c.audio for c in soundscape_chunks(chunks, seed)])
    cpu = FrontEnd(model, params, providers=["CPUExecutionProvider"], threads=threads)
    single = FrontEnd(model, params, providers=["CPUExecutionProvider"], threads=1)
    fft_threads = threads or default_threads()
    fft, fft_single = FFTFrontEnd(params, threads=fft_threads), FFTFrontEnd(params, threads=1)
    for frontend in (cpu, single, fft, fft_single):
        frontend.run(pcm[:batch])  # warm-up: allocations, folded constants, work planes
    reference_features(pcm[0], params)  # warm-up: librosa's filterbank cache, imports

    seconds = {"onnx": 0.0, "onnx_1": 0.0, "fft": 0.0, "fft_1": 0.0, "reference": 0.0}
    for _ in range(repeats):
        for start in range(0, chunks, batch):
            rows = pcm[start : start + batch]
            seconds["onnx"] += _timed(lambda: cpu.run(rows))
            seconds["onnx_1"] += _timed(lambda: single.run(rows))
            seconds["fft"] += _timed(lambda: fft.run(rows))
            seconds["fft_1"] += _timed(lambda: fft_single.run(rows))
            seconds["reference"] += _timed(lambda: [reference_features(r, params) for r in rows])
    done = chunks * repeats
    results: dict[str, object] = {
        "chunks": chunks,
        "batch": batch,
        "repeats": repeats,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "onnxruntime": ort.__version__,
        "onnx_cpu_threads": threads or os.cpu_count(),
        "onnx_cpu_chunks_per_s": done / seconds["onnx"],
        "onnx_cpu_1thread_chunks_per_s": done / seconds["onnx_1"],
        "fft_threads": fft_threads,
        "fft_cpu_chunks_per_s": done / seconds["fft"],
        "fft_cpu_1thread_chunks_per_s": done / seconds["fft_1"],
        "reference_chunks_per_s": done / seconds["reference"],
        "reference_threads": 1,
    }
    # The FFT form over the MatMul graph on the same CPU threads (and on one thread each).
    results["fft_over_onnx_cpu"] = seconds["onnx"] / seconds["fft"]
    results["fft_over_onnx_cpu_1thread"] = seconds["onnx_1"] / seconds["fft_1"]
    results["cpu_ratio"] = seconds["reference"] / seconds["onnx"]
    results["cpu_1thread_ratio"] = seconds["reference"] / seconds["onnx_1"]

    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = FrontEnd(model, params, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        gpu.run(pcm[:batch])
        elapsed = sum(_timed(lambda: gpu.run(pcm[i : i + batch]))
                      for _ in range(repeats) for i in range(0, chunks, batch))
        results["onnx_gpu_chunks_per_s"] = done / elapsed
        results["gpu_ratio"] = results["onnx_gpu_chunks_per_s"] / results["reference_chunks_per_s"]
    else:
        results["onnx_gpu_chunks_per_s"] = None
        results["gpu_note"] = "no CUDA provider here (onnxruntime-gpu and a GPU are needed)"
    return results
