"""int8 and fp16 variants: really converted, recorded agreement that a re-run reproduces,
and scores that follow the fp32 bundle's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from soundscape.bundle import BundleFeatures, load_bundle
from soundscape.errors import UserError
from soundscape.fusion import FusionModel
from soundscape.models.quantize import VariantOptions, make_variant, measure_agreement
from soundscape.models.samples import HELD_OUT_SEED, onnx_frontend, synthetic_set


@pytest.fixture(scope="module")
def held_out(bundles: dict[str, Path]) -> object:
    fp32 = load_bundle(bundles["fp32"])
    return synthetic_set(48, HELD_OUT_SEED, BundleFeatures(), onnx_frontend(fp32.path("frontend")))


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_variant_records_agreement_a_rerun_reproduces(bundles: dict[str, Path], held_out,
                                                      precision: str) -> None:
    fp32, variant = load_bundle(bundles["fp32"]), load_bundle(bundles[precision])
    manifest = variant.manifest
    assert manifest.precision == precision
    assert manifest.version == f"{fp32.version}-{precision}"
    agreement = manifest.agreement_with_fp32
    assert agreement is not None and agreement.samples == 48
    assert agreement.fp32_version == fp32.version and "seeds 1000000-1000047" in agreement.held_out
    rerun = measure_agreement(FusionModel(fp32, device="cpu"), FusionModel(variant, device="cpu"),
                              held_out, fp32.version)
    assert rerun.top1 == pytest.approx(agreement.top1)
    assert variant.labels == fp32.labels
    assert variant.manifest.graphs["frontend"].sha256 == fp32.manifest.graphs["frontend"].sha256


def test_int8_is_quantized_and_follows_fp32(bundles: dict[str, Path], held_out) -> None:
    fp32, int8 = load_bundle(bundles["fp32"]), load_bundle(bundles["int8"])
    converted = ("embedder", "resnet50", "wave_cnn", "embed_classifier", "meta")
    assert sorted(int8.manifest.model_extra["conversion"]["converted"]) == sorted(converted)
    for role in converted:
        assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8.path(role)), role
        assert int8.sizes()[role] < fp32.sizes()[role], role
    # Relu after a quantized Conv is folded into its output range; MaxPool runs on uint8.
    for role in ("embedder", "resnet50", "wave_cnn"):
        graph = onnx.load(str(int8.path(role))).graph
        producer = {out: node for node in graph.node for out in node.output}
        folded = [n.name for n in graph.node if n.op_type == "Relu"
                  and producer.get(n.input[0]) is not None
                  and producer[n.input[0]].op_type == "DequantizeLinear"]
        assert not folded, f"{role}: Relu left in float after a quantized op: {folded}"
    assert "Relu" in _ops(fp32.path("wave_cnn"))  # (so the check above has Relus to fold)
    # The embedder's 2x2 average pools run as depthwise Convs (QLinearAveragePool is slow).
    assert "AveragePool" in _ops(fp32.path("embedder"))
    assert "AveragePool" not in _ops(int8.path("embedder"))
    assert sum(int8.sizes()[r] for r in converted) < 0.4 * sum(fp32.sizes()[r] for r in converted)
    # EfficientNet stays float by default (its int8 graph is slower on x86).
    assert "QuantizeLinear" not in _ops(int8.path("effnet_b3_lora"))
    assert (int8.manifest.graphs["effnet_b3_lora"].sha256
            == fp32.manifest.graphs["effnet_b3_lora"].sha256)
    a = FusionModel(fp32, device="cpu").score(held_out.arrays).probabilities
    b = FusionModel(int8, device="cpu").score(held_out.arrays).probabilities
    # Random small-profile weights: per-item top-1 is too close to call (see docs/explanation/model.md), so
    # check the scores themselves follow fp32.
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8
    assert int8.manifest.agreement_with_fp32.mean_abs_diff < 0.1


def test_fp16_keeps_float32_io_and_agrees(bundles: dict[str, Path], held_out) -> None:
    fp32, fp16 = load_bundle(bundles["fp32"]), load_bundle(bundles["fp16"])
    model = onnx.load(str(fp16.path("resnet50")))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert all(spec.dtype == "float32" for spec in fp16.manifest.graphs["resnet50"].inputs)
    a = FusionModel(fp32, device="cpu").score(held_out.arrays).probabilities
    b = FusionModel(fp16, device="cpu").score(held_out.arrays).probabilities
    assert np.abs(a - b).max() < 0.02 and np.abs(a - b).mean() < 2e-3
    assert fp16.manifest.agreement_with_fp32.top1 >= 0.9


def test_variants_come_only_from_fp32(bundles: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is int8; variants are made from an fp32 bundle"):
        make_variant(bundles["int8"], tmp_path / "x", "fp16")
    with pytest.raises(UserError, match="unknown precision"):
        make_variant(bundles["fp32"], tmp_path / "x", "int4")
    with pytest.raises(UserError, match=r"cannot keep \['frontend'\] float"):
        make_variant(bundles["fp32"], tmp_path / "x", "int8", VariantOptions(float_roles=("frontend",)))


def test_int8_calibrates_on_a_count_that_is_no_multiple_of_the_batch(bundles: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    # onnxruntime's percentile calibrator stacks every batch's outputs; a short last batch
    # used to crash it.
    options = VariantOptions(calibration_samples=13, held_out_samples=8,
                             float_roles=("effnet_b3_lora", "resnet50", "embedder"))
    report = make_variant(bundles["fp32"], tmp_path / "int8-13", "int8", options,
                          progress=lambda _line: None)
    int8 = load_bundle(tmp_path / "int8-13")
    assert int8.manifest.precision == "int8"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8.path("wave_cnn"))
    assert report is not None
