"""Reduced-precision variants of an fp32 bundle: int8 for CPUs and the Pi, fp16 for GPUs.

int8 is static quantization (QDQ, weights per channel) calibrated on branch inputs:
dynamic quantization cost the seed's users most of their accuracy, because it
re-estimates activation ranges per batch from whatever arrives. fp16 converts weights
and arithmetic to half precision with float32 inputs and outputs, so the runtime feeds
every variant alike. The front-end (DSP, dB arithmetic) stays fp32 in every variant.

Each variant is scored next to its fp32 source on a held-out set (seeds apart from the
calibration set's) and records its top-1 agreement in the manifest.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import (
    BRANCHES,
    EMBEDDER,
    FRONTEND,
    META,
    Agreement,
    Bundle,
    graph_entry,
    load_bundle,
    write_manifest,
)
from soundscape.errors import UserError
from soundscape.fusion import FusionModel
from soundscape.models.samples import (
    CALIBRATION_SEED,
    HELD_OUT_SEED,
    SampleSet,
    onnx_frontend,
    run_onnx,
    sample_set,
)

Progress = Callable[[str], None]
#: Graphs a variant converts; the front-end is copied unchanged.
CONVERTED = (EMBEDDER, *BRANCHES, META)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Weight-bearing ops, Relu and MaxPool. A Relu right after a quantized Conv or Gemm is
#: folded into that op's output range and disappears (left in float it costs a
#: DequantizeLinear, the Relu and a QuantizeLinear per layer); a quantized MaxPool keeps
#: its input's scale, so onnxruntime runs it on uint8. Full-size bundle, one thread, 16
#: chunks, `soundscape models quantize` with its defaults: embedder 524 -> 480 ms,
#: ResNet50 152 -> 142, 1-D CNN 109 -> 73 (Relu alone, without MaxPool, made the 1-D CNN
#: slower: 173 ms, its pooling left in float between two scales).
INT8_OP_TYPES = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool")


@dataclass
class VariantReport:
    precision: str
    version: str
    agreement: Agreement
    sizes: dict[str, int]
    seconds: float


def branch_feeds(fp32: FusionModel, samples: SampleSet) -> dict[str, np.ndarray]:
    """Every converted graph's input for `samples`: features, embedding and branch_probs."""
    feeds = dict(samples.arrays)
    feeds["embedding"] = run_onnx(fp32.bundle.path(EMBEDDER), {"mel": feeds["mel"]})["embedding"]
    probs = [fp32.branch_probabilities({n: feeds[n][i:i + 16] for n in feeds})
             for i in range(0, len(samples), 16)]
    feeds["branch_probs"] = np.concatenate(probs)
    return feeds


def top1_agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of items whose highest-probability label is the same in both."""
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1)))


def top1_in_top5(reference: np.ndarray, other: np.ndarray) -> float:
    """Share of items whose reference top label is among the other's five highest."""
    top5 = np.argsort(other, axis=1)[:, -5:]
    return float(np.mean((top5 == reference.argmax(axis=1)[:, None]).any(axis=1)))


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How closely `other` follows `reference` ([items, classes] probabilities)."""
    return {"top1": top1_agreement(reference, other),
            "top1_in_top5": top1_in_top5(reference, other),
            "mean_abs_diff": float(np.abs(reference - other).mean())}


@dataclass
class VariantOptions:
    calibration: Path | None = None  # .npz of branch inputs; None: synthetic clips
    held_out: Path | None = None
    calibration_samples: int = 64
    held_out_samples: int = 256
    method: str = "percentile"  # int8 activation ranges: minmax, entropy or percentile
    per_channel: bool = True
    # Graphs an int8 variant copies unquantized. EfficientNet: its int8 graph measured
    # 0.7-0.9x the float speed on x86 (pointwise convolutions between float depthwise
    # ones and SiLU/squeeze-excite pay a quantize/dequantize each) and lost the most
    # accuracy, so by default it stays float.
    float_roles: tuple[str, ...] = ("effnet_b3_lora",)


def make_variant(source: Path, out: Path, precision: str, options: VariantOptions | None = None,
                 *, force: bool = False, progress: Progress = print) -> VariantReport:
    """Write the `precision` variant of the fp32 bundle `source` to `out`."""
    started = time.perf_counter()
    options = options or VariantOptions()
    if precision not in ("int8", "fp16"):
        raise UserError(f"unknown precision {precision!r}", hint="int8 or fp16")
    unknown = sorted(set(options.float_roles) - set(CONVERTED))
    if unknown:
        raise UserError(f"cannot keep {unknown} float", hint=f"roles: {', '.join(CONVERTED)}")
    bundle = load_bundle(source)
    if bundle.manifest.precision != "fp32":
        raise UserError(f"{bundle.root}: is {bundle.manifest.precision}; variants are made "
                        "from an fp32 bundle")
    out = out.expanduser().absolute()
    if out.exists() and not force:
        raise UserError(f"{out} exists", hint="pass --force to replace it")
    fp32 = FusionModel(bundle, device="cpu")
    frontend = onnx_frontend(bundle.path(FRONTEND)) if bundle.has_frontend else None
    features = bundle.manifest.features
    converted = [r for r in CONVERTED if precision == "fp16" or r not in options.float_roles]

    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        conversion: dict[str, Any] = {"converted": converted, "keep_io_types": True}
        if precision == "int8":
            samples = sample_set(options.calibration, options.calibration_samples,
                                 CALIBRATION_SEED, features, frontend)
            progress(f"calibrating on {samples.source}")
            feeds = branch_feeds(fp32, samples)
            conversion.update(method=options.method, per_channel=options.per_channel,
                              calibration=samples.source, op_types=list(INT8_OP_TYPES),
                              float_nodes="the first convolution, depthwise convolutions")
        for role, entry in bundle.manifest.graphs.items():
            target = staging / entry.file
            role_started = time.perf_counter()
            if role not in converted:
                shutil.copyfile(bundle.path(role), target)
                continue
            if precision == "int8":
                (spec,) = entry.inputs
                _quantize_int8(bundle.path(role), target, spec.name, feeds[spec.name],
                               options.method, options.per_channel)
            else:
                _convert_fp16(bundle.path(role), target)
            progress(f"{role}: {bundle.path(role).stat().st_size / 1e6:.1f} MB -> "
                     f"{target.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - role_started:.1f} s")
        shutil.copyfile(bundle.root / bundle.manifest.labels.file, staging / bundle.manifest.labels.file)
        variant = _write_variant_manifest(bundle, staging, precision, conversion, agreement=None)

        held = sample_set(options.held_out, options.held_out_samples, HELD_OUT_SEED, features,
                          frontend)
        progress(f"top-1 agreement with fp32 on {held.source}")
        agreement = measure_agreement(fp32, FusionModel(variant, device="cpu"), held, bundle.version)
        progress(f"top-1 agreement: {agreement.top1:.2%} of {agreement.samples}")
        _write_variant_manifest(bundle, staging, precision, conversion, agreement)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    final = load_bundle(out)
    return VariantReport(precision, final.version, agreement, final.sizes(),
                         time.perf_counter() - started)


def measure_agreement(fp32: FusionModel, other: FusionModel, held: SampleSet, fp32_version: str,
                      batch: int = 32) -> Agreement:
    reference, candidate = [], []
    for part in held.batches(batch):
        reference.append(fp32.score(part).probabilities)
        candidate.append(other.score(part).probabilities)
    figures = compare(np.concatenate(reference), np.concatenate(candidate))
    return Agreement(**figures, samples=len(held), held_out=held.source,
                     fp32_version=fp32_version)


def _write_variant_manifest(bundle: Bundle, root: Path, precision: str,
                            conversion: dict[str, Any], agreement: Agreement | None) -> Bundle:
    import onnxruntime as ort

    graphs = {}
    for role, entry in bundle.manifest.graphs.items():
        session = ort.InferenceSession(str(root / entry.file), providers=["CPUExecutionProvider"])
        graphs[role] = graph_entry(root, entry.file, session)
    manifest = bundle.manifest.model_copy(update={
        "precision": precision,
        "version": f"{bundle.version}-{precision}",
        "graphs": graphs,
        "agreement_with_fp32": agreement,
        "conversion": conversion,
    })
    write_manifest(root, manifest)
    return load_bundle(root)


def even_batch(count: int, largest: int) -> int:
    """The largest batch size up to `largest` that splits `count` items evenly."""
    return next(size for size in range(min(largest, max(count, 1)), 0, -1) if count % size == 0)


class _Reader:
    """onnxruntime's CalibrationDataReader over one input array, in small batches.

    Every batch has the same size (the largest divisor of the count up to `batch`):
    onnxruntime's histogram calibrators (percentile, entropy) stack the outputs of all
    batches and fail on a shorter last one.
    """

    def __init__(self, name: str, array: np.ndarray, batch: int = 8) -> None:
        size = even_batch(len(array), batch)
        self._parts = [array[i:i + size] for i in range(0, len(array), size)]
        self._name = name
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._parts):
            return None
        self._next += 1
        return {self._name: self._parts[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


def float_nodes(model: Any) -> list[str]:
    """Nodes an int8 variant leaves in float.

    The convolution reading the graph's input (its rounding error reaches every later
    layer, and it is a small share of the work) and depthwise convolutions (onnxruntime's
    int8 depthwise kernels are slower than float on x86: quantizing them costs accuracy
    and buys nothing).
    """
    inputs = {i.name for i in model.graph.input}
    keep = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group > 1 or inputs & set(node.input):
            keep.append(node.name)
    return keep


def _quantize_int8(source: Path, target: Path, input_name: str, calibration: np.ndarray,
                   method: str, per_channel: bool) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(input_name, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference only: the symbolic pass trips over the dynamo exporter's
        # value_info of unknown rank.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        options = dict(
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            # u8 activations x s8 weights: the VNNI/AVX2 kernels' native form on x86; s8
            # activations measured 2-3 times slower here.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Weight-bearing ops and Relu (folded away): quantizing SiLU, sigmoid gates
            # and pooling as well measured no faster and cost EfficientNet a third more
            # error.
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_exclude=float_nodes(onnx.load(str(prepared))),
            calibrate_method=methods[method],
            calibration_providers=["CPUExecutionProvider"],
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
            quantize_static(str(prepared), str(target), reader, **options)
    quantized = onnx.load(str(target))
    if pools_as_depthwise_convs(quantized):
        onnx.save(quantized, str(target))


def pools_as_depthwise_convs(model: Any) -> int:
    """Replace each non-overlapping AveragePool (kernel equal to stride, no padding) with
    the same average as a depthwise Conv of constant weights 1 / kernel area; returns how
    many. Why: between a DequantizeLinear and a QuantizeLinear onnxruntime fuses
    AveragePool into QLinearAveragePool, a slow kernel (15 % of the int8 CNN14
    embedder's time here), while the Conv runs as a QLinearConv: the embedder went from
    about 30 to 25.5 ms per chunk on one core, its outputs unchanged within a rounding step.
    """
    import onnx
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    channels: dict[str, int] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    nodes, replaced = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = list(attrs.get("kernel_shape", []))
        if (node.op_type != "AveragePool" or len(kernel) != 2 or node.input[0] not in channels
                or list(attrs.get("strides", [1, 1])) != kernel
                or any(attrs.get("pads", [0, 0, 0, 0])) or attrs.get("ceil_mode", 0)
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")):
            nodes.append(node)
            continue
        count = channels[node.input[0]]
        weights = f"{node.name}_as_conv_weights"
        model.graph.initializer.append(numpy_helper.from_array(
            np.full((count, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), np.float32), weights))
        nodes.append(helper.make_node("Conv", [node.input[0], weights], list(node.output),
                                      name=f"{node.name}_as_conv", group=count,
                                      kernel_shape=kernel, strides=kernel))
        replaced += 1
    if replaced:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return replaced


def _convert_fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
