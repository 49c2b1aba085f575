"""The runtime front-end as one ONNX graph, built with onnx.helper (no PyTorch).

PCM in, the three branch inputs out (the contract in docs/architecture.md):

    pcm      float32 [batch, 320000]   mono, 32 kHz, [-1, 1]
    waveform float32 [batch, 320000]   spectral-gate denoised, peak-normalised
    mel      float32 [batch, 1, 64, 313]  power dB relative to the max, top_db 80
    mel_aug  float32 [batch, 1, 64, 313]  2-8 kHz boosted in call seconds, then mel

ONNX Runtime's CUDA provider has no STFT, DFT or MelWeightMatrix kernels, so every
transform here is a MatMul with a fixed basis, the mel filterbank a constant matrix,
noisereduce's IIR noise floor a pair of weighted CumSums and its mask smoothing a Conv.
The DFT bases are generated inside the graph from Range/Mod/Cos/Sin on constants (ONNX
Runtime folds them once at load), which keeps frontend.onnx about 0.3 MB instead of the
~20 MB the stored bases would take.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from soundscape.models.frontend import dsp
from soundscape.frontend_params import FEATURES, FeatureParams

OPSET = 17
IR_VERSION = 8
INPUT = "pcm"
OUTPUTS = ("waveform", "mel", "mel_aug")
_DB = 10.0 / math.log(10.0)
_TINY = 1e-12


class _Builder:
    """Appends nodes with unique output names; constants become initializers."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | float | int | list[int], hint: str = "c") -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, dtype=np.int64), "i")

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: object) -> str:
        name = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attrs))
        return name

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op("Slice", x, self.ints(start), self.ints(end), self.ints(axis))

    def square(self, x: str) -> str:
        return self.op("Mul", x, x)

    def db(self, power: str, amin: float) -> str:
        """10 * log10(max(power, amin))."""
        return self.op("Mul", self.op("Log", self.op("Max", power, self.const(amin))),
                       self.const(_DB))


def _dft_basis(b: _Builder, n_fft: int, bins: int, first: int = 0) -> str:
    """[n_fft, 2 * (bins - first)]: columns win[n] cos(2 pi k n / N) for k in
    first..bins-1, then win[n] sin(...).

    k * n is reduced modulo N in int64 before the float cast, so the angle stays in
    [0, 2 pi) and float32 keeps it exact to ~1e-7 however large k * n is.
    """
    n = b.op("Unsqueeze", b.op("Range", b.const(np.int64(0)), b.const(np.int64(n_fft)),
                               b.const(np.int64(1))), b.ints(1))
    k = b.op("Unsqueeze", b.op("Range", b.const(np.int64(first)), b.const(np.int64(bins)),
                               b.const(np.int64(1))), b.ints(0))
    phase = b.op("Mod", b.op("Mul", n, k), b.const(np.int64(n_fft)))
    angle = b.op("Mul", b.op("Cast", phase, to=TensorProto.FLOAT),
                 b.const(np.float32(2 * np.pi / n_fft)))
    basis = b.op("Concat", b.op("Cos", angle), b.op("Sin", angle), axis=1)
    return b.op("Mul", basis, b.const(dsp.hann_periodic(n_fft)[:, None]))


def _frames(b: _Builder, blocks: str, count: int, per_frame: int) -> str:
    """[B, blocks, hop] -> [B, count, per_frame * hop]: frame t = blocks t..t+per_frame-1."""
    parts = [b.slice(blocks, q, q + count, 1) for q in range(per_frame)]
    return b.op("Concat", *parts, axis=-1)


def _conv_rows(b: _Builder, rows: str, kernel: np.ndarray) -> str:
    """'same' zero-padded 1-D convolution of [N, 1, L] rows with an odd symmetric kernel."""
    return b.op("Conv", rows, b.const(kernel[None, None, :]),
                pads=[kernel.size // 2, kernel.size // 2])


def _denoise(b: _Builder, x: str, params: FeatureParams) -> str:
    """noisereduce's non-stationary spectral gate on [B, samples] -> [B, samples]."""
    d = params.denoise
    layout = dsp.gate_layout(params)
    if d.n_fft % d.hop_length:
        raise ValueError("the gate's n_fft must be a multiple of its hop")
    per_frame = d.n_fft // d.hop_length
    bins = d.n_fft // 2 + 1
    window = dsp.hann_periodic(d.n_fft)

    padded = b.op("Pad", x, b.ints(0, layout.left_pad, 0, layout.right_pad))
    blocks = b.op("Reshape", padded, b.ints(0, -1, d.hop_length))
    frames = _frames(b, blocks, layout.count, per_frame)
    basis = _dft_basis(b, d.n_fft, bins)  # [n_fft, 2 * bins], windowed
    spec = b.op("MatMul", frames, basis)  # [B, T, 2 * bins]
    re, im = b.slice(spec, 0, bins, 2), b.slice(spec, bins, 2 * bins, 2)
    magnitude = b.op("Sqrt", b.op("Add", b.square(re), b.square(im)))

    # Noise floor: filtfilt of a one-pole low-pass along time, as two weighted CumSums.
    smooth = dsp.smoother(params)
    pre, post = smooth.forward_weights()
    forward = b.op("Mul", b.op("CumSum", b.op("Mul", magnitude, b.const(pre[:, None])),
                               b.const(np.int64(1))), b.const(post[:, None]))
    pre, post = smooth.backward_weights()
    floor = b.op("Mul", b.op("CumSum", b.op("Mul", forward, b.const(pre[:, None])),
                             b.const(np.int64(1)), reverse=1), b.const(post[:, None]))

    ratio = b.op("Div", b.op("Sub", magnitude, floor), b.op("Max", floor, b.const(_TINY)))
    mask = b.op("Sigmoid", b.op("Mul", b.op("Sub", ratio, b.const(d.thresh_n_mult)),
                                b.const(d.sigmoid_slope)))
    # noisereduce's 2-D smoothing kernel is an outer product: two 1-D convolutions
    # (zero-padded 'same', like its fftconvolve) cost 30 taps per bin instead of 221,
    # each run along the contiguous axis (one row per batch item and bin or frame).
    along_freq, along_time = dsp.mask_smoothing_factors(params)
    rows = b.op("Reshape", b.op("Transpose", mask, perm=[0, 2, 1]), b.ints(-1, 1, layout.count))
    rows = _conv_rows(b, rows, along_time)
    mask = b.op("Transpose", b.op("Reshape", rows, b.ints(-1, bins, layout.count)), perm=[0, 2, 1])
    rows = _conv_rows(b, b.op("Reshape", mask, b.ints(-1, 1, bins)), along_freq)
    mask = b.op("Reshape", rows, b.ints(-1, layout.count, bins))
    mask = b.op("Add", b.op("Mul", mask, b.const(d.prop_decrease)),
                b.const(1.0 - d.prop_decrease))
    gated = b.op("Mul", spec, b.op("Concat", mask, mask, axis=2))

    # Inverse: irfft as a MatMul with the same (windowed) basis transposed, weighting bins
    # 0 and N/2 once and the rest twice; overlap-add; scipy's division by the summed
    # squared windows.
    overlap = sum(window[q * d.hop_length:(q + 1) * d.hop_length] ** 2 for q in range(per_frame))
    if not np.allclose(overlap, overlap[0], rtol=1e-9):
        raise ValueError("window and hop do not overlap-add to a constant")
    weights = np.full(bins, 2.0)
    weights[[0, -1]] = 1.0
    scale = np.concatenate([weights, weights]) / d.n_fft / overlap[0]
    synthesis = b.op("Mul", b.op("Transpose", basis, perm=[1, 0]), b.const(scale[:, None]))
    out = b.op("MatMul", gated, synthesis)  # [B, T, n_fft], windowed frames
    out = b.op("Reshape", out, b.ints(0, layout.count, per_frame, d.hop_length))
    shifted = []
    for q in range(per_frame):
        part = b.op("Squeeze", b.slice(out, q, q + 1, 2), b.ints(2))
        shifted.append(b.op("Pad", part, b.ints(0, q, 0, 0, per_frame - 1 - q, 0)))
    summed = b.op("Reshape", b.op("Sum", *shifted), b.ints(0, -1))
    return b.slice(summed, layout.left_pad, layout.left_pad + params.samples, 1)


def _centred_frames(b: _Builder, signal: str, params: FeatureParams) -> str:
    """librosa's centred framing (zero padding n_fft // 2 each side): [B, frames, n_fft]."""
    if params.n_fft % params.hop_length:
        raise ValueError("n_fft must be a multiple of hop_length")
    span = (params.frames - 1) * params.hop_length + params.n_fft
    left = params.n_fft // 2
    padded = b.op("Pad", signal, b.ints(0, left, 0, span - left - params.samples))
    blocks = b.op("Reshape", padded, b.ints(0, -1, params.hop_length))
    return _frames(b, blocks, params.frames, params.n_fft // params.hop_length)


def _power(b: _Builder, frames: str, n_fft: int, bins: int, first: int = 0) -> str:
    """|STFT|^2 of bins first..bins-1: [B, frames, bins - first]."""
    count = bins - first
    spec = b.op("MatMul", frames, _dft_basis(b, n_fft, bins, first))
    return b.op("Add", b.square(b.slice(spec, 0, count, 2)),
                b.square(b.slice(spec, count, 2 * count, 2)))


def _mels(
    b: _Builder, waveform: str, raw: str, peak: str, params: FeatureParams
) -> tuple[str, str]:
    """librosa's centred STFT power -> mel power, and its augmented twin.

    The augmented mel boosts the call band in the seconds where calls are: where a
    large share of the band's energy survived denoising (noise is gated to ~-20 dB,
    calls pass), a measure that gusts and rain cannot fake. `raw` is the input after
    repair and DC removal, `peak` what the waveform was divided by.
    """
    filterbank = dsp.mel_filterbank(params)
    bins = dsp.used_bins(filterbank)
    fb = b.const(filterbank[:, :bins].T)  # [bins, n_mels]
    power = _power(b, _centred_frames(b, waveform, params), params.n_fft, bins)
    mel = b.op("MatMul", power, fb)  # [B, frames, n_mels]

    a = params.augment
    band = dsp.band_bins(params, a)
    first, last = int(np.flatnonzero(band)[0]), int(np.flatnonzero(band)[-1])
    if last >= bins:
        raise ValueError("the boosted band must lie below fmax")
    onehot = dsp.frame_segments(params, a)  # [frames, segments]
    per_segment = b.const(onehot / onehot.sum(axis=0))

    def segment_energy(band_power: str) -> str:  # [B, frames, n] -> [B, 1, segments]
        energy = b.op("ReduceSum", band_power, b.ints(2), keepdims=1)
        return b.op("MatMul", b.op("Transpose", energy, perm=[0, 2, 1]), per_segment)

    kept = segment_energy(b.slice(power, first, last + 1, 2))
    # Undo the peak normalisation, so both energies are on the input's scale.
    kept = b.op("Mul", kept, b.op("Unsqueeze", b.square(peak), b.ints(2)))
    raw_frames = _centred_frames(b, raw, params)
    before = segment_energy(_power(b, raw_frames, params.n_fft, last + 1, first))
    survival = b.op("Div", kept, b.op("Add", before, b.const(params.amin)))
    level = b.db(survival, params.amin)
    presence = b.op("Sigmoid", b.op("Div", b.op("Sub", level, b.const(a.presence_db)),
                                    b.const(a.presence_slope_db)))
    gain = b.op("Add", b.op("Mul", presence, b.const(10 ** (a.boost_db / 20) - 1)),
                b.const(1.0))
    extra = b.op("Transpose", b.op("MatMul", b.op("Sub", b.square(gain), b.const(1.0)),
                                   b.const(onehot.T)), perm=[0, 2, 1])  # [B, frames, 1]
    band_fb = b.op("Mul", fb, b.const(band[:bins, None]))  # folded at load
    mel_aug = b.op("Add", mel, b.op("Mul", b.op("MatMul", power, band_fb), extra))
    return mel, mel_aug


def _to_db_image(b: _Builder, mel_power: str, params: FeatureParams, out: str) -> str:
    """librosa.power_to_db(ref=np.max, top_db) per item, as [B, 1, n_mels, frames]."""
    db = b.db(mel_power, params.amin)
    relative = b.op("Sub", db, b.op("ReduceMax", db, axes=[1, 2], keepdims=1))
    clamped = b.op("Max", relative, b.const(-params.top_db))
    return b.op("Unsqueeze", b.op("Transpose", clamped, perm=[0, 2, 1]), b.ints(1), out=out)


def build_frontend(params: FeatureParams = FEATURES) -> onnx.ModelProto:
    """The whole front-end graph; checked by onnx.checker before it is returned."""
    b = _Builder()
    # Defined input: NaN -> 0 (NaN != NaN), clip to [-1, 1], DC removed.
    x = b.op("Where", b.op("Equal", INPUT, INPUT), INPUT, b.const(np.float32(0.0)))
    x = b.op("Clip", x, b.const(np.float32(-1.0)), b.const(np.float32(1.0)))
    if params.remove_dc:
        # The mean in float64: a float32 reduction over 320,000 samples leaves a residual
        # DC of ~1e-4 of the offset, which peak normalisation would then blow up.
        mean = b.op("ReduceMean", b.op("Cast", x, to=TensorProto.DOUBLE), axes=[1], keepdims=1)
        x = b.op("Sub", x, b.op("Cast", mean, to=TensorProto.FLOAT))
    denoised = _denoise(b, x, params)
    peak = b.op("Max", b.op("ReduceMax", b.op("Abs", denoised), axes=[1], keepdims=1),
                b.const(params.peak_floor))
    waveform = b.op("Div", denoised, peak, out=OUTPUTS[0])
    mel_power, mel_aug_power = _mels(b, waveform, x, peak, params)
    _to_db_image(b, mel_power, params, OUTPUTS[1])
    _to_db_image(b, mel_aug_power, params, OUTPUTS[2])

    image = ["batch", 1, params.n_mels, params.frames]
    graph = helper.make_graph(
        b.nodes,
        "soundscape_frontend",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", params.samples])],
        [
            helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT,
                                          ["batch", params.samples]),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, image),
            helper.make_tensor_value_info(OUTPUTS[2], TensorProto.FLOAT, image),
        ],
        initializer=b.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="soundscape.models.frontend",
        doc_string="PCM -> denoised waveform, mel, augmented mel (docs/frontend.md)",
        ir_version=IR_VERSION,
    )
    helper.set_model_props(model, {"features": json.dumps(params.details(), sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    return model


def write_frontend(path: Path, params: FeatureParams = FEATURES) -> Path:
    """Write frontend.onnx (the bundle's `frontend` role) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(build_frontend(params), str(path))
    return path
