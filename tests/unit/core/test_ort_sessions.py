"""Provider choice for every bundle runtime: CUDA when asked for and present, CPU kept
as the fallback, clear errors otherwise; options set on a real onnxruntime."""

from __future__ import annotations

from types import SimpleNamespace

import onnxruntime
import pytest

from soundscape.bundle import BundleError
from soundscape.ort_sessions import import_onnxruntime, providers, session_options


def _ort(*available: str) -> SimpleNamespace:
    return SimpleNamespace(get_available_providers=lambda: list(available))


def test_cpu_only_host() -> None:
    assert providers(_ort("CPUExecutionProvider"), "auto", 0) == ("cpu", ["CPUExecutionProvider"])
    with pytest.raises(BundleError, match="cuda") as caught:
        providers(_ort("CPUExecutionProvider"), "cuda", 0)
    assert "SOUNDSCAPE_MODELS__DEVICE=cpu" in (caught.value.hint or "")


def test_cuda_host_keeps_cpu_as_fallback_unless_cpu_is_asked_for() -> None:
    ort = _ort("CUDAExecutionProvider", "CPUExecutionProvider")
    kind, chosen = providers(ort, "auto", 1)
    assert kind == "cuda"
    assert chosen == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert providers(ort, "cpu", 0) == ("cpu", ["CPUExecutionProvider"])


def test_unknown_device_is_refused() -> None:
    with pytest.raises(BundleError, match="unknown device 'tpu'"):
        providers(_ort("CPUExecutionProvider"), "tpu", 0)


def test_session_options_on_the_real_runtime() -> None:
    ort = import_onnxruntime()
    assert ort is onnxruntime
    options = session_options(ort, intra_op_threads=2)
    assert options.intra_op_num_threads == 2
    assert options.enable_cpu_mem_arena is False
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
