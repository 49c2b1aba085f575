"""A bundle that is not what its manifest says is refused at load, with one message that
names the file and the mismatch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from soundscape.bundle import BundleError, load_bundle, sha256_file
from soundscape.fusion import FusionModel


def _edit(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    change(manifest)
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def test_missing_file(bundle_copy: Path) -> None:
    (bundle_copy / "resnet50.onnx").unlink()
    with pytest.raises(BundleError, match=r"resnet50\.onnx: missing"):
        load_bundle(bundle_copy)


def test_wrong_hash(bundle_copy: Path) -> None:
    path = bundle_copy / "wave_cnn.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"wave_cnn\.onnx: sha256 [0-9a-f]{16}\.\.\. but the manifest"):
        load_bundle(bundle_copy)


def test_manifest_shape_against_the_contract(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["graphs"]["resnet50"]["inputs"][0].update(shape=["batch", 1, 64, 300]))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    message = str(info.value)
    assert "resnet50.onnx" in message and "mel_aug float32[batch, 1, 64, 300]" in message
    assert "float32[batch, 1, 64, 313] in the contract" in message


def test_graph_that_disagrees_with_its_manifest(bundle_copy: Path) -> None:
    """A different graph under a listed name (hash updated): caught when loaded."""
    (bundle_copy / "resnet50.onnx").write_bytes((bundle_copy / "wave_cnn.onnx").read_bytes())
    _edit(bundle_copy, lambda m: m["graphs"]["resnet50"].update(
        sha256=sha256_file(bundle_copy / "resnet50.onnx")))
    load_bundle(bundle_copy)  # the manifest alone is consistent
    with pytest.raises(BundleError) as info:
        FusionModel(bundle_copy, device="cpu")
    message = str(info.value)
    assert "resnet50.onnx" in message and "['waveform'] in the graph" in message
    assert "['mel_aug'] in the manifest" in message


def test_unknown_precision(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m.update(precision="int4"))
    with pytest.raises(BundleError, match=r"bundle\.json: precision: Input should be 'fp32', 'fp16' or 'int8'"):
        load_bundle(bundle_copy)


def test_labels_that_disagree_with_the_output_width(bundle_copy: Path) -> None:
    labels = bundle_copy / "labels.txt"
    labels.write_text("".join(f"{line}\n" for line in labels.read_text().splitlines()[:-1]))
    _edit(bundle_copy, lambda m: m["labels"].update(sha256=sha256_file(labels)))
    with pytest.raises(BundleError, match=r"labels\.txt: 205 labels, but the manifest says num_classes 206"):
        load_bundle(bundle_copy)
    # Claiming 205 classes instead: now the graphs' 206-wide outputs disagree.
    _edit(bundle_copy, lambda m: (m.update(num_classes=205), m["thresholds"].pop("species_205")))
    with pytest.raises(BundleError, match=r"logits float32\[batch, 206\] in the manifest, but "
                                          r"logits float32\[batch, 205\] in the contract"):
        load_bundle(bundle_copy)


def test_not_a_bundle(tmp_path: Path, bundle_copy: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "absent")
    with pytest.raises(BundleError, match=r"bundle\.json: missing"):
        load_bundle(tmp_path)
    (bundle_copy / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_verify_command_refuses_with_exit_status_2(bundle_copy: Path) -> None:
    (bundle_copy / "meta.onnx").write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "soundscape", "models", "verify", str(bundle_copy)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "meta.onnx: sha256" in done.stderr and "Traceback" not in done.stderr
