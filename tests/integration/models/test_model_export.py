"""Export: graphs checked against PyTorch, a manifest that matches the files, checkpoints
loaded with their LoRA adapters merged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from soundscape.bundle import BRANCHES, ROLES, BundleFeatures, load_bundle, sha256_file
from soundscape.models import branches
from soundscape.models.export import ExportRequest, export_bundle
from soundscape.models.lora import LoRAConv2d
from soundscape.models.profiles import SMALL
from soundscape.models.samples import random_input, synthetic_set

FEATURES = BundleFeatures()
CLASSES = 206


def test_export_prints_bounded_parity_for_every_graph(export_log: tuple[Path, str]) -> None:
    _, output = export_log
    pattern = r"(\w+): [\d.]+ MB, max \|onnx - torch\| = ([\d.e+-]+) \(bound ([\d.e+-]+)\)"
    found = {role: (diff, bound) for role, diff, bound in re.findall(pattern, output)}
    assert set(found) == set(branches.TORCH_ROLES)
    for role, (diff, bound) in found.items():
        assert float(diff) <= float(bound) <= 1.0, role


def test_manifest_describes_the_files(export_log: tuple[Path, str]) -> None:
    root, _ = export_log
    manifest = json.loads((root / "bundle.json").read_text())
    assert set(manifest["graphs"]) == set(ROLES)
    assert manifest["precision"] == "fp32" and manifest["num_classes"] == CLASSES
    for role, entry in manifest["graphs"].items():
        assert sha256_file(root / entry["file"]) == entry["sha256"], role
        for tensor in entry["inputs"] + entry["outputs"]:
            assert tensor["shape"][0] == "batch" and tensor["dtype"] == "float32"
    assert manifest["graphs"]["meta"]["inputs"][0]["shape"] == ["batch", 4 * CLASSES]
    assert manifest["labels"]["sha256"] == sha256_file(root / "labels.txt")
    assert (root / "labels.txt").read_text().splitlines()[:2] == ["species_000", "species_001"]
    assert manifest["thresholds"]["species_205"] == 0.5
    assert manifest["features"]["frames"] == 313 and manifest["features"]["n_fft"] == 2048
    assert manifest["version"].startswith("fusion-small-c206-")
    assert not list(root.parent.glob(".*partial")), "the staging folder is left behind"


def test_graphs_run_any_batch_size(export_log: tuple[Path, str]) -> None:
    import onnxruntime as ort

    bundle = load_bundle(export_log[0])
    rng = np.random.default_rng(5)
    for role in BRANCHES:
        session = ort.InferenceSession(str(bundle.path(role)))
        (spec,) = bundle.manifest.graphs[role].inputs
        for batch in (1, 5):
            (out,) = session.run(None, {spec.name: random_input(spec.name, (batch, *spec.shape[1:]), rng)})
            assert out.shape == (batch, CLASSES)


def test_checkpoints_export_with_lora_merged(tmp_path: Path) -> None:
    """Trained-looking LoRA factors (non-zero B) survive the merge: onnxruntime on the
    merged graph computes what PyTorch computes with the adapters unmerged."""
    torch.manual_seed(3)
    mel = torch.from_numpy(synthetic_set(4, 7, FEATURES).arrays["mel"])
    checkpoints, reference = {}, {}
    for role in branches.TORCH_ROLES:
        model = branches.build(role, SMALL, CLASSES, FEATURES)
        for module in model.modules():
            if isinstance(module, LoRAConv2d):
                torch.nn.init.normal_(module.lora_b, std=0.05)
        if role == "effnet_b3_lora":  # statistics of real mels, so the output depends on them
            branches.data_dependent_init(model, [mel])
        checkpoints[role] = tmp_path / f"{role}.pt"
        torch.save(model.state_dict(), checkpoints[role])
        reference[role] = model.eval()
    out = tmp_path / "bundle"
    export_bundle(ExportRequest(out=out, profile=SMALL, labels=[f"c{i}" for i in range(CLASSES)],
                                features=FEATURES, checkpoints=checkpoints, random_seed=None),
                  progress=lambda _m: None)
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["origin"]["weights"]["effnet_b3_lora"] == "effnet_b3_lora.pt"

    import onnxruntime as ort

    mel = synthetic_set(3, 11, FEATURES).arrays["mel"]
    with torch.no_grad():
        expected = reference["effnet_b3_lora"](torch.from_numpy(mel)).numpy()
        lora_free = branches.build("effnet_b3_lora", SMALL, CLASSES, FEATURES)
        lora_free.load_state_dict(reference["effnet_b3_lora"].state_dict())
        for module in lora_free.modules():
            if isinstance(module, LoRAConv2d):
                module.lora_b.zero_()
        without_adapters = lora_free.eval()(torch.from_numpy(mel)).numpy()
    (actual,) = ort.InferenceSession(str(out / "effnet_b3_lora.onnx")).run(None, {"mel": mel})
    assert np.abs(actual - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    assert np.abs(without_adapters - expected).max() > 1e-2, "the adapters changed nothing"


def test_existing_output_is_kept_without_force(export_log: tuple[Path, str]) -> None:
    from soundscape.errors import UserError

    root, _ = export_log
    with pytest.raises(UserError, match="exists"):
        export_bundle(ExportRequest(out=root, profile=SMALL, labels=["a"], features=FEATURES,
                                    checkpoints={}, random_seed=0))
