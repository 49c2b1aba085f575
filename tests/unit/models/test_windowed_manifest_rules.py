"""Manifest rules of windowed bundles and of fusion bundles with an audio embedder."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from soundscape.bundle import Manifest, WindowParams, expected_io, manifest_io

SHA = "0" * 64
WINDOW = {"sample_rate": 48_000, "samples": 144_000, "hop_samples": 144_000, "embedding_dim": 1024}


def _windowed(**changes: Any) -> dict[str, Any]:
    graph = {"file": "classifier.onnx", "sha256": SHA, "inputs": [], "outputs": []}
    return {"kind": "windowed", "version": "v", "precision": "fp32", "num_classes": 3,
            "labels": {"sha256": SHA}, "window": WINDOW, "graphs": {"classifier": graph}} | changes


def test_a_windowed_manifest_reads_and_names_its_contract() -> None:
    manifest = Manifest.model_validate(_windowed())
    io = manifest_io(manifest)
    assert io["classifier"]["inputs"][0].shape == ["batch", 144_000]
    assert [o.name for o in io["classifier"]["outputs"]] == ["logits", "embedding"]
    assert io["range"]["inputs"][0].shape == ["batch", 3]


@pytest.mark.parametrize(("changes", "message"), [
    ({"window": None}, "needs `window`"),
    ({"graphs": {}}, "lack the roles"),
    ({"graphs": {"classifier": {"file": "c.onnx", "sha256": SHA, "inputs": [], "outputs": []},
                 "meta": {"file": "m.onnx", "sha256": SHA, "inputs": [], "outputs": []}}},
     "unknown graph roles"),
    ({"window": WINDOW | {"hop_samples": 200_000}}, "skip audio"),
    ({"audio_embedder": WINDOW}, "belongs to fusion"),
])
def test_bad_windowed_manifests_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(_windowed(**changes))


def test_a_fusion_audio_embedder_reads_windows_and_sets_the_embedding_width() -> None:
    from soundscape.bundle import BundleFeatures

    io = expected_io(BundleFeatures(), 12, WindowParams(**WINDOW))
    assert io["embedder"]["inputs"][0].name == "audio"
    assert io["embedder"]["inputs"][0].shape == ["batch", 144_000]
    assert io["embed_classifier"]["inputs"][0].shape == ["batch", 1024]
    plain = expected_io(BundleFeatures(), 12)
    assert plain["embed_classifier"]["inputs"][0].shape == ["batch", 2048]
