"""TF-Lite -> ONNX for BirdNET's two models (needs the `birdnet` extra; import-time only).

BirdNET's mel layer keeps the real part of an RFFT through a Cast from complex, which
tf2onnx does not convert (it accepts an RFFT only before ComplexAbs). The real part of
a DFT is a MatMul against a cosine basis, so the RFFT2D node becomes exactly that: the
same numbers, and a graph of plain MatMuls that every execution provider runs.
The classifier also gets a second output, the 1024-d global average pool feeding its
last dense layer (BirdNET's embedding), and both graphs get the contract's tensor names.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def cosine_basis(n_fft: int) -> np.ndarray:
    """[n_fft, n_fft // 2 + 1]: x @ basis is the real part of rfft(x)."""
    k = np.arange(n_fft // 2 + 1)
    n = np.arange(n_fft)
    return np.cos(2.0 * np.pi * np.outer(n, k) / n_fft).astype(np.float32)


def _rfft_real_part(ctx: Any, node: Any, _name: str, _args: Any) -> Any:
    """tf2onnx handler for RFFT2D (TF-Lite's 1-D RFFT, fft_length [1, n]): a MatMul."""
    from onnx import TensorProto
    from tf2onnx import utils

    length = node.inputs[1].get_tensor_value(as_list=True)
    if len(length) != 2 or length[0] != 1:
        raise ValueError(f"RFFT2D with fft_length {length}: only 1-D transforms are converted")
    consumers = {c.type for c in ctx.find_output_consumers(node.output[0])}
    if not consumers <= {"Squeeze", "Cast", "Reshape"}:
        raise ValueError(f"RFFT2D feeds {sorted(consumers)}; this handler keeps only the real part")
    basis = ctx.make_const(utils.make_name("rfft_real_basis"), cosine_basis(int(length[1])))
    node.type = "MatMul"
    ctx.replace_input(node, node.input[1], basis.output[0], 1)
    ctx.set_dtype(node.output[0], TensorProto.FLOAT)
    return node


def convert_tflite(path: Path, *, rfft: bool) -> Any:
    """An onnx ModelProto of a TF-Lite file."""
    _quiet_tensorflow()
    import tf2onnx

    handlers = {"RFFT2D": (_rfft_real_part, [])} if rfft else None
    model, _ = tf2onnx.convert.from_tflite(str(path), opset=OPSET, custom_op_handlers=handlers)
    return model


def classifier_graph(tflite: Path) -> Any:
    """BirdNET's classifier: audio [batch, 144000] -> logits [batch, C], embedding [batch, 1024]."""
    import onnx

    model = convert_tflite(tflite, rfft=True)
    graph = model.graph
    (final,) = [n for n in graph.node if n.output[0] == graph.output[0].name]
    matmul = next(n for n in graph.node if n.output[0] in final.input and n.op_type == "MatMul")
    renames = {graph.input[0].name: "audio", graph.output[0].name: "logits"}
    embedding_source = renames.get(matmul.input[0], matmul.input[0])
    _rename(graph, renames)
    # The pooled features feed the classifier's MatMul; a named Identity exposes them.
    graph.node.append(onnx.helper.make_node("Identity", [embedding_source], ["embedding"],
                                            name="embedding_output"))
    width = _dense_input_width(graph, matmul)
    graph.output.append(onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT,
                                                           ["batch", width]))
    _batch_axis(graph)
    onnx.checker.check_model(model)
    return model


def range_graph(tflite: Path) -> Any:
    """The species-range model: site [batch, 3] (lat, lon, week) -> scores [batch, C]."""
    import onnx

    model = convert_tflite(tflite, rfft=False)
    graph = model.graph
    _rename(graph, {graph.input[0].name: "site", graph.output[0].name: "scores"})
    _batch_axis(graph)
    onnx.checker.check_model(model)
    return model


def _rename(graph: Any, mapping: dict[str, str]) -> None:
    for value in [*graph.input, *graph.output]:
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]


def _dense_input_width(graph: Any, matmul: Any) -> int:
    import onnx.numpy_helper

    weights = {t.name: t for t in graph.initializer}
    tensor = weights.get(matmul.input[1])
    if tensor is None:
        raise ValueError("the classifier's last MatMul has no constant weights")
    return int(onnx.numpy_helper.to_array(tensor).shape[0])


def _batch_axis(graph: Any) -> None:
    """Name the dynamic first axis `batch` (tf2onnx calls it unk__N), as the contract does."""
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"


def save(model: Any, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
