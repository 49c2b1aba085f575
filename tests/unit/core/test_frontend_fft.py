"""The FFT front-end (soundscape/frontend_fft.py) against frontend.onnx and against the
noisereduce + librosa reference, with the tolerances the graph keeps against the reference
(models/frontend/parity.py): on the parity cases, hostile input and real recordings; its
constants against dsp's; and which front-ends it may stand in for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soundscape import frontend_fft as fft
from soundscape.frontend_inputs import (
    DEFAULT_LENGTH_TOLERANCE_MS,
    DEFAULT_MAX_NONFINITE_FRACTION,
    prepare_batch,
)
from soundscape.frontend_params import FEATURES, DenoiseParams, FeatureParams
from soundscape.models.frontend import dsp
from soundscape.models.frontend.graph import build_frontend
from soundscape.models.frontend.parity import TOLERANCES, parity_cases, run_parity
from soundscape.models.frontend.reference import reference_features
from soundscape.models.frontend.runtime import FeatureBatch, FrontEnd
from soundscape.synthetic import soundscape_chunk

N = FEATURES.samples
ROOT = Path(__file__).resolve().parents[3]
#: The real recordings the project carries (tests/data/real, and the MIT clip in the package).
REAL = {"opensoundscape_birds_10s.wav": ROOT / "models/birdnet/check_audio",
        "birdclef_style_frog.ogg": ROOT / "tests/data/real"}


@pytest.fixture(scope="module")
def graph() -> FrontEnd:
    return FrontEnd(build_frontend(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def ours() -> fft.FFTFrontEnd:
    return fft.FFTFrontEnd(threads=2)


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.abs(a[name].astype(np.float64) - b[name]).max()) for name in TOLERANCES}


def _within(diff: dict[str, float]) -> bool:
    return all(diff[name] <= tolerance for name, tolerance in TOLERANCES.items())


# ---- constants ------------------------------------------------------------------------------
def test_constants_equal_the_graphs() -> None:
    p = FEATURES
    np.testing.assert_array_equal(fft.hann_periodic(1024), dsp.hann_periodic(1024))
    np.testing.assert_allclose(fft.mel_filterbank(p), dsp.mel_filterbank(p), rtol=0, atol=0)
    assert fft.used_bins(fft.mel_filterbank(p)) == dsp.used_bins(dsp.mel_filterbank(p))
    assert vars(fft.gate_layout(p)) == vars(dsp.gate_layout(p))
    np.testing.assert_array_equal(fft.band_bins(p, p.augment), dsp.band_bins(p, p.augment))
    np.testing.assert_array_equal(fft.frame_segments(p, p.augment),
                                  dsp.frame_segments(p, p.augment))
    smooth = dsp.smoother(p)
    fw_pre, fw_post, bw_pre, bw_post = fft.smoother_weights(p)
    for ours_, theirs in zip((fw_pre, fw_post, bw_pre, bw_post),
                             (*smooth.forward_weights(), *smooth.backward_weights()), strict=True):
        np.testing.assert_allclose(ours_, theirs, rtol=1e-12)
    n_freq, n_time = fft.mask_smoothing_sizes(p)
    freq, time = dsp.mask_smoothing_factors(p)
    assert (2 * n_freq + 1, 2 * n_time + 1) == (freq.size, time.size)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 8])
def test_smoothing_is_noisereduces_kernel(n: int) -> None:
    """The taps are dsp's triangle (up to its sum), and the smoothing a 'same' zero-padded
    convolution along time, then frequency."""
    params = FeatureParams(denoise=DenoiseParams(
        freq_mask_smooth_hz=(n + 0.5) * FEATURES.sample_rate / (FEATURES.denoise.n_fft / 2),
        time_mask_smooth_ms=(n + 0.5) * FEATURES.denoise.hop_length / FEATURES.sample_rate * 1e3))
    assert fft.mask_smoothing_sizes(params) == (n, n)
    freq, time = dsp.mask_smoothing_factors(params)
    taps = fft.triangle_taps(n)
    np.testing.assert_allclose(taps / taps.sum(), freq, rtol=1e-12)
    np.testing.assert_allclose(taps / taps.sum(), time, rtol=1e-12)

    rng = np.random.default_rng(n)
    # Shapes around the block edges: fewer rows than a block, exact blocks, a short tail.
    for shape in [(5, 3), (32, 64), (40, 30), (97, 70)]:
        values = rng.random(shape).astype(np.float32)
        smoother = fft.TriangleSmoother(taps, fft.triangle_taps(n + 1), block=8)
        work = fft._Scratch()
        got = smoother(values, work)
        want = np.apply_along_axis(_same, 0, values.astype(np.float64), taps)
        want = np.apply_along_axis(_same, 1, want, fft.triangle_taps(n + 1))
        np.testing.assert_allclose(got, want, rtol=1e-5)
        # Reusing the scratch planes (their zero padding) gives the same answer.
        np.testing.assert_allclose(smoother(values, work), want, rtol=1e-5)


def _same(v: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """'same' zero-padded convolution, also when the kernel is longer than `v`."""
    return np.convolve(v, taps, "full")[len(taps) // 2:len(taps) // 2 + len(v)]


def test_smoother_refuses_even_kernels() -> None:
    with pytest.raises(ValueError, match="odd"):
        fft.TriangleSmoother(np.ones(4), np.ones(3))


@pytest.mark.parametrize("rows", [1, 15, 16, 17, 50])
def test_running_sum_both_ways(rows: int) -> None:
    values = np.random.default_rng(rows).random((rows, 7)).astype(np.float32)
    running = fft.RunningSum(block=16)
    out = np.empty_like(values)
    np.testing.assert_allclose(running(values, out), np.cumsum(values, axis=0), rtol=1e-5)
    np.testing.assert_allclose(running(values, out, reverse=True),
                               np.cumsum(values[::-1], axis=0)[::-1], rtol=1e-5)


# ---- parity ---------------------------------------------------------------------------------
class _AsFrontEnd:
    """The FFT path behind runtime.FrontEnd's `features`, for parity.run_parity."""

    length_tolerance_ms = DEFAULT_LENGTH_TOLERANCE_MS
    max_nonfinite_fraction = DEFAULT_MAX_NONFINITE_FRACTION

    def __init__(self, frontend: fft.FFTFrontEnd) -> None:
        self.frontend = frontend

    def features(self, chunks: list[np.ndarray]) -> FeatureBatch:
        batch = prepare_batch(chunks, FEATURES, self.length_tolerance_ms,
                              self.max_nonfinite_fraction)
        out = self.frontend.run(batch.pcm)
        return FeatureBatch(out["waveform"], out["mel"], out["mel_aug"], batch.index, batch.errors)


def test_parity_with_the_reference_on_every_real_world_case(ours: fft.FFTFrontEnd) -> None:
    results = run_parity(parity_cases(seed=1), _AsFrontEnd(ours))  # type: ignore[arg-type]
    problems = {r.name: r.problems() for r in results if r.problems()}
    assert not problems
    assert {r.name for r in results if r.error} == {
        "all-nan", "too-short", "too-long", "mostly-nan", "stereo"}


def test_parity_with_the_graph_on_every_case(graph: FrontEnd, ours: fft.FFTFrontEnd) -> None:
    cases = [c for c in parity_cases(seed=2) if not c.expect_error]
    pcm = prepare_batch([c.audio for c in cases]).pcm
    diff = _max_diff(ours.run(pcm), graph.run(pcm))
    assert _within(diff), diff
    # Both are float32 of the same steps: far closer than either is to the reference.
    assert diff["waveform"] < 2e-5 and diff["mel"] < 0.01 and diff["mel_aug"] < 0.01, diff


def test_hostile_input_matches_the_graph(graph: FrontEnd, ours: fft.FFTFrontEnd) -> None:
    """Straight into run(), past the input checks, as test_graph feeds the graph."""
    rng = np.random.default_rng(0)
    hostile = np.stack([
        np.zeros(N), np.full(N, 0.7), np.full(N, np.nan),
        np.where(rng.random(N) < 0.5, np.inf, -np.inf), rng.uniform(-50, 50, N),
        np.full(N, 1e-30),
    ]).astype(np.float32)
    got, want = ours.run(hostile), graph.run(hostile)
    for name, value in got.items():
        assert np.all(np.isfinite(value)), name
        assert value.shape == want[name].shape and value.dtype == np.float32
    assert _within(_max_diff(got, want))
    assert not got["waveform"][[0, 1, 2]].any()
    assert np.abs(got["waveform"][5]).max() < 1e-20


def test_threads_and_batch_items_do_not_change_the_answer(ours: fft.FFTFrontEnd) -> None:
    pcm = np.stack([soundscape_chunk(s).audio for s in (2, 3, 4)])
    together = ours.run(pcm)
    alone = fft.FFTFrontEnd(threads=1).run(pcm[1:2])
    for name in together:
        np.testing.assert_array_equal(together[name][1], alone[name][0])


def test_writes_into_given_buffers(ours: fft.FFTFrontEnd) -> None:
    pcm = soundscape_chunk(5).audio[None]
    out = {"waveform": np.empty((1, N), np.float32),
           "mel": np.empty((1, 1, 64, 313), np.float32),
           "mel_aug": np.empty((1, 1, 64, 313), np.float32)}
    got = ours.run(pcm, out=out)
    assert all(got[name] is out[name] for name in out)
    with pytest.raises(ValueError, match="pcm must be"):
        ours.run(pcm[:, :1000])


def _real_chunks() -> list[tuple[str, np.ndarray]]:
    import soundfile as sf

    chunks = []
    for name, starts in (("opensoundscape_birds_10s.wav", (0,)),
                         ("birdclef_style_frog.ogg", (0, 40, 90))):
        path = REAL[name] / name
        assert path.is_file(), f"{path}: the project's real recording is missing"
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != FEATURES.sample_rate:
            continue
        mono = audio.mean(axis=1)
        for start in starts:
            piece = mono[start * rate:start * rate + N]
            if piece.size == N:
                chunks.append((f"{name}@{start}s", piece))
    if not chunks:
        raise AssertionError("no 32 kHz recording of 10 s among the project's real recordings")
    return chunks


def test_real_recordings_match_graph_and_reference(graph: FrontEnd,
                                                   ours: fft.FFTFrontEnd) -> None:
    chunks = _real_chunks()
    pcm = np.stack([c for _, c in chunks])
    got, want = ours.run(pcm), graph.run(pcm)
    assert _within(_max_diff(got, want))
    for row, (name, chunk) in enumerate(chunks):
        reference = reference_features(chunk)
        diff = _max_diff({k: v[row] for k, v in got.items()}, reference)
        assert _within(diff), (name, diff)


# ---- which front-ends it replaces -------------------------------------------------------
def _meta(model) -> SimpleNamespace:
    props = {p.key: p.value for p in model.metadata_props}
    return SimpleNamespace(producer_name=model.producer_name, graph_name=model.graph.name,
                           custom_metadata_map=props)


def test_recognises_the_projects_frontend_only() -> None:
    import onnxruntime as ort

    model = build_frontend()
    manifest = FEATURES.manifest()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert fft.is_standard_frontend(session.get_modelmeta(), manifest) == FEATURES
    assert fft.is_standard_frontend(_meta(model), manifest) == FEATURES

    other = _meta(model)
    other.producer_name = "someone-else"
    assert fft.is_standard_frontend(other, manifest) is None
    assert fft.is_standard_frontend(_meta(model), {**manifest, "fmax": 12_000.0}) is None
    changed = _meta(model)
    details = json.loads(changed.custom_metadata_map["features"])
    details["denoise"]["new_knob"] = 1
    changed.custom_metadata_map = {"features": json.dumps(details)}
    assert fft.is_standard_frontend(changed, manifest) is None
    bare = _meta(model)
    bare.custom_metadata_map = {}
    assert fft.is_standard_frontend(bare, manifest) is None


def test_other_parameters_follow_the_graph(graph: FrontEnd) -> None:
    """A front-end built for other FeatureParams: the FFT path reads them the same way."""
    params = FeatureParams(fmin=150.0, fmax=12_000.0, n_mels=48, top_db=70.0)
    other = FrontEnd(build_frontend(params), params, providers=["CPUExecutionProvider"])
    pcm = np.stack([soundscape_chunk(11).audio])
    diff = _max_diff(fft.FFTFrontEnd(params).run(pcm), other.run(pcm))
    assert _within(diff), diff
