"""Prove the front-end graph needs nothing the CUDA execution provider lacks.

ONNX Runtime's CUDA provider has no STFT, DFT or MelWeightMatrix kernels; a graph using
them silently runs those nodes on the CPU, copying every batch across PCIe twice. The
check lists the graph's op types (as written, and after ONNX Runtime's own CPU-side
optimisation at load) and holds them against the CUDA provider's kernel list. It runs
without a GPU, so it guards every build on any machine.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

#: Op types (default domain) with CUDAExecutionProvider kernels at opset 17 for the
#: element types used here (float32; int64 index arithmetic; bool masks), from
#: onnxruntime's docs/OperatorKernels.md. Deliberately only what a front-end needs.
CUDA_EP_OPS = frozenset({
    "Abs", "Add", "Cast", "Clip", "Concat", "Conv", "Cos", "CumSum", "Div", "Equal",
    "Exp", "Expand", "Gather", "Identity", "Log", "MatMul", "Max", "Min", "Mod", "Mul",
    "Neg", "Pad", "Pow", "Range", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum",
    "Reshape", "Sigmoid", "Sin", "Slice", "Sqrt", "Squeeze", "Sub", "Sum", "Transpose",
    "Unsqueeze", "Where",
})

#: Spectral ops that exist in ONNX but only run on ONNX Runtime's CPU provider.
CPU_ONLY_SPECTRAL = frozenset({
    "STFT", "DFT", "MelWeightMatrix", "HannWindow", "HammingWindow", "BlackmanWindow",
})


@dataclass(frozen=True)
class OpReport:
    graph_ops: dict[str, int]  # op type -> node count, as written
    loaded_ops: dict[str, int]  # after ONNX Runtime's basic optimisation on the CPU provider
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def op_types(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        for node in model.graph.node
    )
    return dict(sorted(counts.items()))


def _problems(ops: dict[str, int], where: str) -> list[str]:
    problems = []
    for op in ops:
        if op in CPU_ONLY_SPECTRAL:
            problems.append(f"{where}: {op} has no CUDA kernel (would fall back to the CPU)")
        elif op not in CUDA_EP_OPS:
            problems.append(f"{where}: {op} is not in the CUDA provider's kernel list")
    return problems


def loaded_op_types(model: onnx.ModelProto) -> dict[str, int]:
    """Op types left once ONNX Runtime has loaded the model on the CPU provider with its
    provider-independent optimisations (constant folding: the DFT bases disappear)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        return op_types(onnx.load(str(optimised), load_external_data=False))


def check_ops(model: onnx.ModelProto) -> OpReport:
    graph_ops = op_types(model)
    loaded = loaded_op_types(model)
    problems = _problems(graph_ops, "graph") + _problems(loaded, "loaded on CPU")
    return OpReport(graph_ops=graph_ops, loaded_ops=loaded, problems=tuple(problems))
