"""Manifest rules and the contract's shapes (no graphs needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from soundscape.bundle import (
    BRANCHES,
    BundleFeatures,
    GraphEntry,
    Manifest,
    combined_sha256,
    expected_io,
)

SHA = "0" * 64


def _manifest(**changes) -> dict:
    graphs = {role: {"file": f"{role}.onnx", "sha256": SHA, "inputs": [], "outputs": []}
              for role in ("embedder", *BRANCHES, "meta")}
    data = {"version": "v1", "precision": "fp32", "num_classes": 3,
            "labels": {"file": "labels.txt", "sha256": SHA}, "graphs": graphs}
    data.update(changes)
    return data


def test_a_minimal_manifest_is_valid() -> None:
    manifest = Manifest.model_validate(_manifest())
    assert manifest.features.frames == 313 and manifest.agreement_with_fp32 is None


@pytest.mark.parametrize("changes, message", [
    ({"precision": "int4"}, "'fp32', 'fp16' or 'int8'"),
    ({"format": 2}, "manifest format 2"),
    ({"num_classes": 0}, "greater than 0"),
    ({"thresholds": {"a": 1.5}}, "thresholds must lie in [0, 1]"),
    ({"version": ""}, "at least 1 character"),
])
def test_bad_fields_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Manifest.model_validate(_manifest(**changes))


def test_roles_must_be_known_and_complete() -> None:
    data = _manifest()
    del data["graphs"]["meta"]
    with pytest.raises(ValidationError, match=r"lack the roles \['meta'\]"):
        Manifest.model_validate(data)
    data = _manifest()
    data["graphs"]["extra"] = data["graphs"]["meta"]
    with pytest.raises(ValidationError, match=r"unknown graph roles \['extra'\]"):
        Manifest.model_validate(data)


def test_feature_parameters_must_be_consistent() -> None:
    with pytest.raises(ValidationError, match="frames 300"):
        BundleFeatures(frames=300)
    with pytest.raises(ValidationError, match="fmin < fmax"):
        BundleFeatures(fmax=20_000)  # above Nyquist at 32 kHz
    assert BundleFeatures(samples=160_000, frames=157).frames == 157


def test_contract_shapes_follow_features_and_classes() -> None:
    io = expected_io(BundleFeatures(n_mels=128, frames=313), num_classes=10)
    assert io["embedder"]["inputs"][0].shape == ["batch", 1, 128, 313]
    assert io["embedder"]["outputs"][0].shape == ["batch", 2048]
    assert io["meta"]["inputs"][0].shape == ["batch", 40]
    assert [s.name for s in io["frontend"]["outputs"]] == ["waveform", "mel", "mel_aug"]
    assert {io[r]["inputs"][0].name for r in BRANCHES} == {"embedding", "mel_aug", "mel", "waveform"}


def test_combined_hash_ignores_order_but_not_content() -> None:
    a = GraphEntry(file="a", sha256="1" * 64, inputs=[], outputs=[])
    b = GraphEntry(file="b", sha256="2" * 64, inputs=[], outputs=[])
    assert combined_sha256({"x": a, "y": b}) == combined_sha256({"y": b, "x": a})
    assert combined_sha256({"x": a, "y": b}) != combined_sha256({"x": b, "y": a})
