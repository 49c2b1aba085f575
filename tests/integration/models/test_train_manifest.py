"""`soundscape models train --manifest` end to end at a small size: real recordings (the
ones the project carries, by absolute path) and synthetic chunks written as WAV files, with
groups; a bundle that loads, whose manifest records where it came from, the same graphs
for the same seed, a parent with an audio embedder, and bad manifests refused naming
their rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundscape.app.cli import cli
from soundscape.bundle import MANIFEST, load_bundle
from soundscape.models import DEMO_BUNDLE
from soundscape.synthetic import soundscape_chunks
from labelled_audio import train_small

@pytest.fixture(scope="module")
def manifest(labelled_manifest: Path) -> Path:
    return labelled_manifest


def _train(manifest: Path, out: Path, *extra: str) -> str:
    return train_small(manifest, out, *extra)


@pytest.fixture(scope="module")
def trained(small_trained_bundle: tuple[Path, str]) -> tuple[Path, str]:
    return small_trained_bundle


def test_the_bundle_loads_and_records_its_training(trained: tuple[Path, str], manifest: Path) -> None:
    import hashlib

    out, output = trained
    bundle = load_bundle(out)
    assert "frog" in bundle.labels and "songbird" in bundle.labels and "warbler" not in bundle.labels
    assert bundle.path("frontend").read_bytes() == (DEMO_BUNDLE / "frontend.onnx").read_bytes()
    assert set(bundle.manifest.thresholds) == set(bundle.labels)
    training = bundle.manifest.model_extra["origin"]["training"]
    assert training["manifest"]["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert training["manifest"]["path"] == str(manifest.absolute())
    assert training["parent"]["version"] == load_bundle(DEMO_BUNDLE).version
    assert training["seed"] == 3 and training["labels_from"] == "the manifest's labels"
    groups = training["groups"]
    assert not set(groups["train"]) & set(groups["validation"]) and groups["validation"]
    assert set(groups["train"]) | set(groups["validation"]) == {
        "station0", "station1", "station2", "station3", "osd", "frogsite", "scape"}
    counts = training["counts"]
    assert counts["train"]["frog"] + counts["validation"]["frog"] == 3
    assert counts["train"]["(none)"] + counts["validation"]["(none)"] >= 2
    assert training["chunks"]["train"] + training["chunks"]["validation"] == 12 + 1 + 3 + 6
    assert set(training["epochs"]) == {"embed_classifier", "resnet50", "effnet_b3_lora",
                                       "wave_cnn", "meta"}
    assert 0 <= training["validation_macro_f1"] <= 1 and set(training["per_class_f1"]) == set(bundle.labels)
    assert training["seconds_per_epoch"] > 0
    assert "validation macro-F1" in output and "per 1,000 clips" in output
    assert f"version {bundle.version}" in output and "worst labels:" in output
    assert "label 'songbird' has one example" in output  # warned, trained on


def test_the_same_seed_gives_the_same_graphs(trained: tuple[Path, str], manifest: Path,
                                             tmp_path: Path) -> None:
    _train(manifest, tmp_path / "again")
    first, again = load_bundle(trained[0]), load_bundle(tmp_path / "again")
    assert {r: g.sha256 for r, g in first.manifest.graphs.items()} == \
        {r: g.sha256 for r, g in again.manifest.graphs.items()}
    assert first.version == again.version and first.manifest.thresholds == again.manifest.thresholds


def test_evaluate_reads_the_training_manifest(trained: tuple[Path, str], manifest: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "evaluate", str(trained[0]), "--manifest",
                                      str(manifest), "--json", "--threads", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["fp32"]["scored"] == 22 and "labelled spans" in report["held_out"]


def _fake_audio_embedder_parent(root: Path) -> Path:
    """The demo bundle with a tiny audio embedder (48 kHz 3 s windows -> 16 log energies)
    in place of its mel embedder, as with_audio_embedder makes them with BirdNET."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from soundscape.bundle import Manifest, WindowParams, graph_entry, write_manifest
    from soundscape.models.birdnet.fusion_embedder import linear_head

    parent = Path(shutil.copytree(DEMO_BUNDLE, root / "parent"))
    samples, width = 144_000, 16
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["audio", "shape"], ["bands"]),
         helper.make_node("Mul", ["bands", "bands"], ["power"]),
         helper.make_node("ReduceMean", ["power"], ["mean"], axes=[2], keepdims=0),
         helper.make_node("Add", ["mean", "floor"], ["floored"]),
         helper.make_node("Log", ["floored"], ["embedding"])],
        "fake_embedder",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", samples])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor("shape", TensorProto.INT64, [3], [-1, width, samples // width]),
         helper.make_tensor("floor", TensorProto.FLOAT, [], [1e-6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(parent / "embedder.onnx"))
    onnx.save(linear_head(np.zeros((width, 12), np.float32), np.zeros(12, np.float32)),
              str(parent / "embed_classifier.onnx"))
    data = json.loads((parent / MANIFEST).read_text())
    for role in ("embedder", "embed_classifier"):
        session = ort.InferenceSession(str(parent / f"{role}.onnx"),
                                       providers=["CPUExecutionProvider"])
        data["graphs"][role] = graph_entry(parent, f"{role}.onnx", session).model_dump()
    data["audio_embedder"] = WindowParams(sample_rate=48_000, samples=samples, hop_samples=samples,
                                          embedding_dim=width).model_dump()
    data["version"] = "fake-audio-embedder"
    write_manifest(parent, Manifest.model_validate(data))
    load_bundle(parent)
    return parent


def test_a_parent_with_an_audio_embedder_keeps_it(manifest: Path, tmp_path: Path) -> None:
    from soundscape.fusion import FusionModel

    parent = _fake_audio_embedder_parent(tmp_path)
    out = tmp_path / "embedded"
    _train(manifest, out, "--parent", str(parent))
    bundle = load_bundle(out)
    assert bundle.manifest.audio_embedder == load_bundle(parent).manifest.audio_embedder
    assert (out / "embedder.onnx").read_bytes() == (parent / "embedder.onnx").read_bytes()
    assert bundle.manifest.graphs["embed_classifier"].inputs[0].shape == ["batch", 16]
    assert bundle.manifest.model_extra["origin"]["training"]["parent"]["version"] == \
        "fake-audio-embedder"
    assert "-embedder-" in bundle.version
    chunk = next(soundscape_chunks(1, seed=99)).audio
    result = FusionModel(bundle, device="cpu").score_audio(chunk[None])
    assert result.probabilities.shape == (1, len(bundle.labels)) and not result.errors


def test_bad_manifests_are_refused_naming_their_rows(manifest: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    syn = manifest.parent / "syn0.wav"
    bad.write_text("path,start,end,labels,group\n"
                   f"{syn},0,10,frog,a\n"
                   f"{syn},5,15,,a\n"
                   f"{syn},12,11,frog,a\n"
                   f"{manifest.parent / 'syn1.wav'},0,99,frog,b\n"
                   "nowhere.wav,,,frog,c\n")
    result = CliRunner().invoke(cli, ["models", "train", "--manifest", str(bad), "--out",
                                      str(tmp_path / "never"), "--labels", "manifest"])
    message = str(result.exception)
    assert result.exit_code == 1 and not (tmp_path / "never").exists()
    assert "line 6 (nowhere.wav): no such file" in message
    assert f"line 3 ({syn}) overlaps line 2 ({syn})" in message
    assert "line 4" in message and "end 11 s is not after start 12 s" in message
    assert "line 5" in message and "end 99 s is past the file's end (20.00 s)" in message
    assert message.count("overlaps") == 1
    assert "nothing was trained" in message


def test_unknown_labels_fail_through_the_command_line(manifest: Path, tmp_path: Path) -> None:
    """The parent's labels are the default label set: a manifest naming others is refused,
    with exit status 2 and the rows named, by the installed command."""
    done = subprocess.run([sys.executable, "-m", "soundscape", "models", "train", "--manifest",
                           str(manifest), "--out", str(tmp_path / "never")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "label 'frog' is not in the parent bundle's labels" in done.stderr
    assert "birdclef_style_frog.ogg" in done.stderr and "line 15" in done.stderr
    assert "--labels manifest" in done.stderr


def test_rare_labels_weigh_more_up_to_a_cap() -> None:
    from soundscape.models.manifest_training import POS_WEIGHT_CAP, pos_weights

    y = np.zeros((100, 3), np.float32)
    y[:50, 0] = 1  # balanced
    y[:2, 1] = 1  # rare
    assert pos_weights(y).tolist() == [1.0, POS_WEIGHT_CAP, 1.0]  # absent label: weight 1
