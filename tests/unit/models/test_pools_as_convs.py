"""The int8 variant's AveragePool rewrite: the same average, only where it is one."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from soundscape.models.quantize import pools_as_depthwise_convs


def _pools_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 9, 13])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3, 4, 6])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3, 7, 11])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 3, 5, 7])
    nodes = [
        # non-overlapping, odd sizes floored: rewritten
        helper.make_node("AveragePool", ["x"], ["a"], name="pool2", kernel_shape=[2, 2],
                         strides=[2, 2]),
        # overlapping: another computation, kept
        helper.make_node("AveragePool", ["x"], ["b"], name="overlap", kernel_shape=[3, 3],
                         strides=[1, 1]),
        # padded: the edge windows average fewer values, kept
        helper.make_node("AveragePool", ["x"], ["c"], name="padded", kernel_shape=[2, 2],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
    ]
    graph = helper.make_graph(nodes, "pools", [x], [a, b, c])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_only_plain_pools_become_convs_with_the_same_output() -> None:
    model = _pools_graph()
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 13)).astype(np.float32)
    want = _run(model, x)
    assert pools_as_depthwise_convs(model) == 1
    onnx.checker.check_model(model)
    ops = {node.name: node.op_type for node in model.graph.node}
    assert ops == {"pool2_as_conv": "Conv", "overlap": "AveragePool", "padded": "AveragePool"}
    got = _run(model, x)
    assert got[0].shape == (2, 3, 4, 6)
    for ours, theirs in zip(got, want, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert pools_as_depthwise_convs(model) == 0  # nothing left to rewrite
