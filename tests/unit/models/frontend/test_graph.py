"""The ONNX front-end: its contract, its ops, its behaviour on hard input, and its parity
with the noisereduce + librosa reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from soundscape.models.frontend.graph import build_frontend, write_frontend
from soundscape.models.frontend.ops_check import check_ops
from soundscape.models.frontend.parity import TOLERANCES, parity_cases, run_parity
from soundscape.models.frontend.reference import reference_features
from soundscape.models.frontend.runtime import FrontEnd
from soundscape.synthetic import soundscape_chunk

N = 320_000


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_frontend()


@pytest.fixture(scope="module")
def frontend(model: onnx.ModelProto) -> FrontEnd:
    return FrontEnd(model, providers=["CPUExecutionProvider"])


def _shape(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_inputs_and_outputs_follow_the_bundle_contract(model: onnx.ModelProto) -> None:
    assert [(v.name, _shape(v)) for v in model.graph.input] == [("pcm", ["batch", N])]
    assert [(v.name, _shape(v)) for v in model.graph.output] == [
        ("waveform", ["batch", N]),
        ("mel", ["batch", 1, 64, 313]),
        ("mel_aug", ["batch", 1, 64, 313]),
    ]
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.ByteSize() < 1_000_000  # DFT bases are generated in the graph, not stored


def test_every_op_has_a_cuda_kernel(model: onnx.ModelProto) -> None:
    report = check_ops(model)
    assert report.ok, report.problems
    assert {"MatMul", "CumSum", "Conv"} <= set(report.graph_ops)
    assert not {"STFT", "DFT", "MelWeightMatrix"} & set(report.graph_ops)
    # ONNX Runtime folds the basis generation away when it loads the graph.
    assert not {"Cos", "Sin", "Range"} & set(report.loaded_ops)


def test_the_op_check_catches_cpu_only_spectral_ops() -> None:
    graph = helper.make_graph(
        [helper.make_node("STFT", ["x", "step"], ["y"])], "stft",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("step", TensorProto.INT64, [], [128])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    report = check_ops(model)
    assert not report.ok and "STFT has no CUDA kernel" in report.problems[0]


def test_written_file_loads_and_runs(tmp_path, frontend: FrontEnd) -> None:
    path = write_frontend(tmp_path / "bundle" / "frontend.onnx")
    pcm = soundscape_chunk(1).audio[None]
    from_file = FrontEnd(path, providers=["CPUExecutionProvider"]).run(pcm)
    in_memory = frontend.run(pcm)
    for name in from_file:
        np.testing.assert_array_equal(from_file[name], in_memory[name])


def test_batch_items_are_independent(frontend: FrontEnd) -> None:
    chunks = [soundscape_chunk(s).audio for s in (2, 3, 4)]
    together = frontend.run(np.stack(chunks))
    alone = frontend.run(chunks[1][None])
    for name in together:
        np.testing.assert_allclose(together[name][1], alone[name][0], atol=1e-5)


def test_features_are_defined_on_hostile_input(frontend: FrontEnd) -> None:
    rng = np.random.default_rng(0)
    hostile = np.stack([
        np.zeros(N),                                   # digital silence
        np.full(N, 0.7),                               # pure DC
        np.full(N, np.nan),                            # NaN straight into the graph
        np.where(rng.random(N) < 0.5, np.inf, -np.inf),  # +-Inf
        rng.uniform(-50, 50, N),                       # far beyond full scale
        np.full(N, 1e-30),                             # denormal-level
    ]).astype(np.float32)
    out = frontend.run(hostile)
    for name, value in out.items():
        assert np.all(np.isfinite(value)), name
    assert np.all(out["mel"] <= 0) and np.all(out["mel"] >= -80)
    assert not out["waveform"][[0, 1, 2]].any()  # silence (and pure DC) stays silence
    assert np.abs(out["waveform"][5]).max() < 1e-20  # below the peak floor: not blown up
    assert np.abs(out["waveform"][4]).max() == pytest.approx(1.0)


def test_outputs_have_the_promised_ranges(frontend: FrontEnd) -> None:
    chunk = soundscape_chunk(5, species=("warbler",), background_kind="pink-wind")
    out = frontend.run(chunk.audio[None])
    assert np.abs(out["waveform"]).max() == pytest.approx(1.0, abs=1e-6)
    for name in ("mel", "mel_aug"):
        assert out[name].max() == pytest.approx(0.0, abs=1e-4)
        assert out[name].min() >= -80.0 - 1e-4


def test_augmented_mel_boosts_the_call_band_in_call_seconds(frontend: FrontEnd) -> None:
    chunk = soundscape_chunk(6, species=("two-note",), background_kind="pink-wind")
    out = frontend.run(chunk.audio[None])
    boost = out["mel_aug"][0, 0] - out["mel"][0, 0]  # [64, 313] in dB
    (event,) = chunk.events
    frames = np.arange(313) * 0.032
    calling = (frames >= np.floor(event.start_s)) & (frames < np.floor(event.end_s) + 1)
    band = slice(30, 50)  # mel bands well inside 2-8 kHz
    quiet = ~calling & (np.abs(frames - event.start_s) > 1.5) & (np.abs(frames - event.end_s) > 1.5)
    # Relative to each image's own maximum: the boosted call seconds gain up to 6 dB.
    assert boost[band][:, calling].mean() - boost[band][:, quiet].mean() > 3.0


def test_denoising_lowers_the_noise_between_calls(frontend: FrontEnd) -> None:
    chunk = soundscape_chunk(8, species=("warbler",), background_kind="pink-wind",
                             snr_db=(15.0, 15.0))
    out = frontend.run(chunk.audio[None])["waveform"][0]
    raw = chunk.audio / np.abs(chunk.audio).max()
    (event,) = chunk.events
    gap = np.ones(N, bool)
    gap[max(0, int((event.start_s - 0.5) * 32000)) : int((event.end_s + 0.5) * 32000)] = False
    # noisereduce gates the noise floor by up to prop_decrease 0.9 (-20 dB).
    assert np.std(out[gap]) < 0.5 * np.std(raw[gap])


def test_matches_reference_on_one_chunk(frontend: FrontEnd) -> None:
    chunk = soundscape_chunk(9, background_kind="brown-rain", species=("fast-trill", "cicada"))
    ours = frontend.run(chunk.audio[None])
    theirs = reference_features(chunk.audio)
    for name, tolerance in TOLERANCES.items():
        assert np.abs(ours[name][0] - theirs[name]).max() <= tolerance, name


def test_parity_on_every_real_world_case(frontend: FrontEnd) -> None:
    results = run_parity(parity_cases(seed=1), frontend)
    problems = {r.name: r.problems() for r in results if r.problems()}
    assert not problems
    refused = {r.name for r in results if r.error}
    assert refused == {"all-nan", "too-short", "too-long", "mostly-nan", "stereo"}
    assert all(r.max_diff for r in results if not r.error)


def test_parity_check_can_fail(frontend: FrontEnd) -> None:
    """A tolerance tighter than float32 arithmetic must be reported, not passed."""
    results = run_parity(parity_cases(seed=1)[:1], frontend)
    assert results[0].problems({"waveform": 0.0, "mel": 0.0, "mel_aug": 0.0})


def test_feature_batch_reports_bad_chunks_by_position(frontend: FrontEnd) -> None:
    good = soundscape_chunk(10).audio
    batch = frontend.features([good, np.full(N, np.nan), good[: N // 2]])
    assert batch.index == (0,) and batch.mel.shape == (1, 1, 64, 313)
    assert set(batch.errors) == {1, 2}
    nothing = frontend.features([np.zeros(3)])
    assert nothing.mel.shape == (0, 1, 64, 313) and nothing.errors


def test_build_is_deterministic(model: onnx.ModelProto) -> None:
    """Bundles record frontend.onnx's sha256: rebuilding must give the same bytes."""
    assert build_frontend().SerializeToString() == model.SerializeToString()
