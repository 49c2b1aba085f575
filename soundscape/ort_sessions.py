"""How every bundle runtime (fusion, windowed) opens ONNX Runtime: the provider choice
and the session options, decided once so both runtimes behave alike on CPU and GPU."""

from __future__ import annotations

from typing import Any

from soundscape.bundle import BundleError


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BundleError(
            "onnxruntime is not installed",
            hint="install the serve extra (pip install 'soundscape[serve]') or gpu",
        ) from None
    return onnxruntime


def providers(ort_module: Any, device: str, device_id: int) -> tuple[str, list[Any]]:
    """('cuda' or 'cpu', the provider list) for a device setting of auto, cuda or cpu."""
    available = ort_module.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise BundleError(
            f"device 'cuda' asked for, but onnxruntime offers only {available}",
            hint="install onnxruntime-gpu (the gpu extra) on a CUDA host, or set "
                 "SOUNDSCAPE_MODELS__DEVICE=cpu",
        )
    if device not in ("auto", "cuda", "cpu"):
        raise BundleError(f"unknown device {device!r}", hint="one of auto, cuda, cpu")
    if cuda and device != "cpu":
        # CPU stays listed: nodes without CUDA kernels (STFT in a front-end) fall back to it.
        return "cuda", [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


def session_options(ort_module: Any, intra_op_threads: int = 0) -> Any:
    options = ort_module.SessionOptions()
    options.graph_optimization_level = ort_module.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The CPU arena keeps every session's peak: one batch of 256 through the full CNN14
    # left gigabytes reserved per session (the fp32 + int8 bench ran out of 24 GB).
    # Without it peak memory at batch 64 fell from 4.2 to 1.5 GB, at the same speed.
    options.enable_cpu_mem_arena = False
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    return options
