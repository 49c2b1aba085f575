"""FusionModel on real small bundles: the scores equal the graphs run one by one, any
batch size gives the same answer, and bad items are refused one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soundscape.bundle import BRANCHES, BundleError
from soundscape.fusion import FusionModel
from soundscape.models.samples import HELD_OUT_SEED, run_onnx, synthetic_pcm
from soundscape.settings import Settings


@pytest.fixture(scope="module")
def model(bundles: dict[str, Path]) -> FusionModel:
    return FusionModel(bundles["fp32"], device="cpu")


@pytest.fixture(scope="module")
def features(bundles: dict[str, Path], model: FusionModel) -> dict[str, np.ndarray]:
    pcm = synthetic_pcm(7, HELD_OUT_SEED, model.bundle.manifest.features)
    return {"pcm": pcm, **run_onnx(model.bundle.path("frontend"), {"pcm": pcm})}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def test_scores_equal_the_graphs_run_one_by_one(model: FusionModel, features: dict) -> None:
    bundle = model.bundle
    branch = {n: features[n] for n in ("waveform", "mel", "mel_aug")}
    branch["embedding"] = run_onnx(bundle.path("embedder"), {"mel": features["mel"]})["embedding"]
    probs = []
    for role in BRANCHES:
        (spec,) = bundle.manifest.graphs[role].inputs
        probs.append(_sigmoid(run_onnx(bundle.path(role), {spec.name: branch[spec.name]})["logits"]))
    meta_in = np.concatenate(probs, axis=1).astype(np.float32)
    expected = _sigmoid(run_onnx(bundle.path("meta"), {"branch_probs": meta_in})["logits"])

    result = model.score({n: features[n] for n in ("waveform", "mel", "mel_aug")})
    assert not result.errors
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert len(set(result.probabilities.argmax(1))) > 1, "every clip got the same top label"
    with_embedding = model.score({**{n: branch[n] for n in branch}})
    np.testing.assert_allclose(with_embedding.probabilities, expected, atol=1e-5)
    assert "embedder" not in with_embedding.timings

    audio = model.score_audio(features["pcm"])
    np.testing.assert_allclose(audio.probabilities, expected, atol=1e-5)
    assert set(audio.timings) == {"frontend", "embedder", *BRANCHES, "meta"}
    assert audio.seconds >= sum(audio.timings.values()) > 0


def test_every_batch_size_gives_the_same_scores(bundles: dict[str, Path], features: dict) -> None:
    whole = FusionModel(bundles["fp32"], device="cpu").score_audio(features["pcm"]).probabilities
    small = FusionModel(bundles["fp32"], device="cpu", max_batch=3)  # 7 items: 3 + 3 + 1
    np.testing.assert_allclose(small.score_audio(features["pcm"]).probabilities, whole, atol=1e-5)
    one_by_one = np.concatenate([small.score_audio(features["pcm"][i:i + 1]).probabilities
                                 for i in range(7)])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)
    # Growing and shrinking batches reuse buffers: the results must not leak between runs.
    again = small.score_audio(features["pcm"][2:4]).probabilities
    np.testing.assert_allclose(again, whole[2:4], atol=1e-5)


def test_lanes_give_the_same_scores_as_one(bundles: dict[str, Path], features: dict) -> None:
    """A batch split across lanes (each its own thread and buffers) scores every chunk as
    one lane does, refused items included, and again after the lanes' buffers were used."""
    one = FusionModel(bundles["fp32"], device="cpu", lanes=1)
    three = FusionModel(bundles["fp32"], device="cpu", lanes=3, max_batch=2)  # 3 + 2 + 2 rows
    assert (one.lanes, three.lanes) == (1, 3)
    pcm = list(features["pcm"])
    pcm[4] = pcm[4][:1000]  # refused, in the second lane's share
    want = one.score_audio(pcm)
    for _ in range(2):
        got = three.score_audio(pcm)
        assert set(got.errors) == set(want.errors) == {4}
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
    np.testing.assert_allclose(three.score_audio(features["pcm"][5:7]).probabilities,
                               want.probabilities[5:7], atol=1e-5)
    assert set(got.timings) == {"frontend", "embedder", *BRANCHES, "meta"}
    if three.frontend_path == "fft":  # each lane runs its own front-end (threads, scratch)
        assert len({id(lane.fft) for lane in three._lanes}) == 3


def test_default_lanes() -> None:
    from soundscape.fusion import default_lanes

    assert default_lanes("cpu", cores=2) == 2
    assert default_lanes("cpu", cores=1) == 1
    assert default_lanes("cuda", cores=16) == 1


def test_bad_items_are_refused_one_by_one(model: FusionModel, features: dict) -> None:
    """score_audio checks each chunk like every front-end input (prepare_batch): a clip
    far from 10 s, of the wrong kind or mostly NaN is refused with its reason; one a few
    samples short, in float64 or int16, or with a few NaN samples is repaired and scored."""
    pcm = list(features["pcm"][:7])
    pcm[1] = pcm[1][:1000]                                       # far too short
    pcm[2] = pcm[2].astype(np.float64)                           # converted
    pcm[3] = pcm[3].copy()
    pcm[3][:5000] = np.nan                                       # 1.6 % NaN: refused
    pcm[4] = pcm[4].copy()
    pcm[4][500] = np.nan                                         # one NaN: zeroed
    pcm[5] = pcm[5][:-100]                                       # 3 ms short: padded
    pcm[6] = np.array(["a"] * 10)                                # not audio
    result = model.score_audio(pcm)
    assert sorted(result.errors) == [1, 3, 6]
    assert "chunk has 1000 samples" in result.errors[1] and "expected 320000" in result.errors[1]
    assert "NaN or Inf" in result.errors[3]
    assert "float or int16" in result.errors[6]
    assert result.ok.tolist() == [True, False, True, False, True, True, False]
    assert np.isnan(result.probabilities[[1, 3, 6]]).all()
    assert np.isfinite(result.probabilities[[0, 2, 4, 5]]).all()
    clean = model.score_audio(features["pcm"][[0, 2]]).probabilities
    np.testing.assert_allclose(result.probabilities[[0, 2]], clean, atol=1e-5)


def test_the_front_end_settings_decide_what_is_repaired(bundles: dict[str, Path],
                                                        features: dict) -> None:
    strict = Settings(models={"device": "cpu"},
                      frontend={"length_tolerance_ms": 0, "max_nonfinite_fraction": 0})
    model = FusionModel.from_settings(strict, bundles["fp32"])
    short, nan = features["pcm"][0][:-1], features["pcm"][1].copy()
    nan[7] = np.nan
    result = model.score_audio([short, nan, features["pcm"][2]])
    assert sorted(result.errors) == [0, 1]
    assert np.isfinite(result.probabilities[2]).all()


def test_a_batch_array_of_the_wrong_kind_refuses_its_items(model: FusionModel, features: dict) -> None:
    inputs = {n: features[n][:3] for n in ("waveform", "mel", "mel_aug")}
    inputs["mel"] = inputs["mel"].astype(np.float64)
    result = model.score(inputs)
    assert sorted(result.errors) == [0, 1, 2] and "dtype float64" in result.errors[0]
    inputs = {n: features[n][:3].copy() for n in ("waveform", "mel", "mel_aug")}
    inputs["waveform"][2, 7] = np.inf
    result = model.score(inputs)
    assert list(result.errors) == [2] and "waveform holds NaN or Inf" in result.errors[2]
    with pytest.raises(ValueError, match="missing"):
        model.score({"mel": inputs["mel"]})
    assert model.score({n: v[:0] for n, v in inputs.items()}).probabilities.shape == (0, 206)


def test_a_bundle_without_front_end_scores_branch_inputs(bundle_copy: Path, features: dict) -> None:
    manifest = json.loads((bundle_copy / "bundle.json").read_text())
    del manifest["graphs"]["frontend"]
    (bundle_copy / "bundle.json").write_text(json.dumps(manifest))
    (bundle_copy / "frontend.onnx").unlink()
    model = FusionModel(bundle_copy, device="cpu")
    assert not model.has_frontend
    with pytest.raises(BundleError, match="no front-end"):
        model.score_audio(features["pcm"])
    assert not model.score({n: features[n] for n in ("waveform", "mel", "mel_aug")}).errors


def test_settings_choose_device_and_batch(bundles: dict[str, Path]) -> None:
    settings = Settings(models={"device": "cpu", "max_batch": 4, "intra_op_threads": 1})
    model = FusionModel.from_settings(settings, bundles["fp32"])
    assert (model.device, model.max_batch) == ("cpu", 4)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BundleError, match="cuda"):
            FusionModel(bundles["fp32"], device="cuda")
