"""Small-profile bundles exported once per test session through the real tools (PyTorch,
the dynamo ONNX exporter, onnxruntime): fp32 with a front-end, and its int8 and fp16
variants. Copies are handed to tests that break them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from soundscape.bundle import BundleFeatures

FEATURES = BundleFeatures()
CLASSES = 206


def contract_frontend(path: Path, features: BundleFeatures = FEATURES) -> Path:
    """A front-end graph with the contract's inputs and outputs (not its DSP): pcm ->
    waveform (the same samples), mel (log-magnitude of the first n_mels*frames samples,
    in dB, shaped like a mel), mel_aug (mel + 6 dB). Enough to test the wiring."""
    import onnx
    from onnx import TensorProto, helper

    size = features.n_mels * features.frames
    nodes = [
        helper.make_node("Identity", ["pcm"], ["waveform"]),
        helper.make_node("Slice", ["pcm", "zero", "size", "one"], ["head"]),
        helper.make_node("Reshape", ["head", "mel_shape"], ["shaped"]),
        helper.make_node("Abs", ["shaped"], ["magnitude"]),
        helper.make_node("Add", ["magnitude", "floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["log"]),
        helper.make_node("Mul", ["log", "db"], ["mel"]),
        helper.make_node("Add", ["mel", "boost"], ["mel_aug"]),
    ]
    consts = [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("size", TensorProto.INT64, [1], [size]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("mel_shape", TensorProto.INT64, [4], [-1, 1, features.n_mels, features.frames]),
        helper.make_tensor("floor", TensorProto.FLOAT, [], [1e-4]),
        helper.make_tensor("db", TensorProto.FLOAT, [], [20 / np.log(10)]),
        helper.make_tensor("boost", TensorProto.FLOAT, [], [6.0]),
    ]
    mel = ["batch", 1, features.n_mels, features.frames]
    graph = helper.make_graph(
        nodes, "contract_frontend",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["batch", features.samples])],
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", features.samples]),
         helper.make_tensor_value_info("mel", TensorProto.FLOAT, mel),
         helper.make_tensor_value_info("mel_aug", TensorProto.FLOAT, mel)],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def invoke(*args: str) -> str:
    """Run `soundscape ARGS` in-process; its output, or the failure with that output."""
    from click.testing import CliRunner

    from soundscape.app.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def export_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The fp32 bundle made by `soundscape models export` (small profile, random weights,
    a contract front-end, labels from a file), and what the command printed."""
    root = tmp_path_factory.mktemp("bundles")
    frontend = contract_frontend(root / "frontend.onnx")
    labels = root / "labels.txt"
    labels.write_text("".join(f"species_{i:03d}\n" for i in range(CLASSES)))
    out = root / "fp32"
    output = invoke("models", "export", str(out), "--profile", "small", "--random",
                    "--labels", str(labels), "--frontend", str(frontend))
    return out, output


@pytest.fixture(scope="session")
def bundles(export_log: tuple[Path, str]) -> dict[str, Path]:
    """'fp32' (see export_log) and its 'int8' and 'fp16' variants (`models quantize`)."""
    fp32 = export_log[0]
    paths = {"fp32": fp32}
    for precision in ("int8", "fp16"):
        paths[precision] = fp32.with_name(precision)
        invoke("models", "quantize", str(fp32), str(paths[precision]), "--precision", precision,
               "--calibration-samples", "16", "--held-out-samples", "48")
    return paths


@pytest.fixture
def bundle_copy(bundles: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the fp32 bundle, for tests that damage it."""
    return Path(shutil.copytree(bundles["fp32"], tmp_path / "bundle"))


@pytest.fixture
def run_cli():
    """`soundscape ...` in-process; returns its output, fails the test on a non-zero exit."""
    return invoke
