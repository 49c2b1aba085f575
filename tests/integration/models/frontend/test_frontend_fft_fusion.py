"""FusionModel's two front-end paths on the demo bundles: the FFT path (auto on the CPU)
gives the graph's probabilities, and a front-end this project did not build is never
replaced by it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from soundscape.bundle import sha256_file
from soundscape.fusion import FusionModel
from soundscape.models import DEMO_BUNDLE, DEMO_INT8_BUNDLE
from soundscape.settings import Settings
from soundscape.synthetic import soundscape_chunk

#: Largest |fft - graph| of a probability. The front-ends differ by ~1e-6 in the waveform
#: and ~2e-3 dB in the mels; fp32 branches keep that at ~1e-5, int8 ones round it up to
#: a quantisation step now and then (~1e-4 measured).
TOLERANCE = {"fp32": 1e-4, "int8": 2e-3}


@pytest.fixture(scope="module")
def pcm() -> list[np.ndarray]:
    chunks = [soundscape_chunk(seed, max_species=3).audio for seed in range(6)]
    chunks.append(np.round(chunks[0] * 32767).astype(np.int16))  # int16, as decoded
    chunks.append(np.full(100, np.nan, np.float32))  # refused by both paths alike
    return chunks


@pytest.mark.parametrize(("bundle", "precision"), [(DEMO_BUNDLE, "fp32"),
                                                    (DEMO_INT8_BUNDLE, "int8")])
def test_fft_and_graph_paths_give_the_same_probabilities(bundle: Path, precision: str,
                                                         pcm: list[np.ndarray]) -> None:
    graph = FusionModel(bundle, device="cpu", frontend_path="graph")
    auto = FusionModel(bundle, device="cpu")
    assert (graph.frontend_path, auto.frontend_path) == ("graph", "fft")
    want, got = graph.score_audio(pcm), auto.score_audio(pcm)
    assert (want.frontend_path, got.frontend_path) == ("graph", "fft")
    assert got.errors.keys() == want.errors.keys() == {7}
    assert "frontend" in got.timings and "frontend" in want.timings
    ok = got.ok
    assert np.isfinite(got.probabilities[ok]).all()
    diff = np.abs(got.probabilities[ok] - want.probabilities[ok]).max()
    assert diff <= TOLERANCE[precision], diff


def test_the_setting_reaches_the_model() -> None:
    settings = Settings()
    assert settings.frontend.frontend_path == "auto"
    graph = settings.model_copy(update={"frontend": settings.frontend.model_copy(
        update={"frontend_path": "graph"})})
    assert FusionModel.from_settings(graph, DEMO_BUNDLE).frontend_path == "graph"
    cpu = settings.model_copy(update={"models": settings.models.model_copy(
        update={"device": "cpu"})})
    assert FusionModel.from_settings(cpu, DEMO_BUNDLE).frontend_path == "fft"
    with pytest.raises(ValueError, match="frontend_path"):
        FusionModel(DEMO_BUNDLE, device="cpu", frontend_path="fast")  # type: ignore[arg-type]


def test_a_third_party_frontend_keeps_its_graph(tmp_path: Path) -> None:
    """Same tensors, another producer: even frontend_path=fft runs the bundle's graph."""
    bundle = Path(shutil.copytree(DEMO_BUNDLE, tmp_path / "bundle"))
    model = onnx.load(str(bundle / "frontend.onnx"))
    model.producer_name = "a-vendor"
    onnx.save_model(model, str(bundle / "frontend.onnx"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["graphs"]["frontend"]["sha256"] = sha256_file(bundle / "frontend.onnx")
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))

    fusion = FusionModel(bundle, device="cpu", frontend_path="fft")
    assert fusion.frontend_path == "graph"
    assert "not the front-end this project builds" in fusion.frontend_path_reason
    assert fusion.score_audio([soundscape_chunk(1).audio]).frontend_path == "graph"
