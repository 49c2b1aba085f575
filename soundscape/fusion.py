"""FusionModel: score batches with a model bundle on ONNX Runtime (numpy, onnxruntime, and
scipy for the CPU front-end).

Pipeline: [front-end: pcm -> waveform, mel, mel_aug] -> embedder (mel -> embedding) ->
four branches -> sigmoid + concatenate -> meta -> sigmoid = probabilities.

Sessions are created once, on the CUDA execution provider when present (CPU otherwise).
Every graph runs through IO binding into float32 buffers kept on the device and reused
for every batch up to the largest seen (at most `max_batch` rows), so the front-end's
outputs go straight into the embedder and branches without a trip through host memory,
and steady-state batches allocate nothing.

The front-end has two forms: frontend.onnx (its DFTs are MatMuls against fixed bases,
right for a GPU) and, on the CPU, the same steps on scipy's real FFT
(soundscape/frontend_fft.py, several times less work). `frontend_path` picks one (auto:
the FFT on the CPU provider, the graph on CUDA); the FFT form replaces only the front-end
this project builds (`is_standard_frontend`), never a bundle's own.

On the CPU a batch is split across `lanes`: each lane scores its share of the chunks
through every stage on its own thread, with its own buffers and single-threaded (or
cores/lanes-threaded) sessions shared by all lanes. Two lanes on 2 cores scored 13 % more
chunks/s than one lane with two intra-op threads (docs/benchmarks.md): each stage's own
threads wait on each other at every operator, independent lanes do not.

Bad items (wrong shape or dtype, NaN or Inf) are refused one by one: the rest of the
batch is scored, and `ScoreResult.errors` says why each refused item was left out.
Audio goes through the front-end's own per-chunk checks first (`prepare_batch`, with the
`frontend` settings): a chunk a few samples off 10 s or with a few NaN samples is
repaired as every other front-end user repairs it, anything else is refused, so nothing
undefined reaches a graph.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from soundscape.bundle import (
    BRANCHES,
    EMBEDDER,
    FRONTEND,
    META,
    Bundle,
    BundleError,
    check_graph_io,
    load_bundle,
)
from soundscape.frontend_inputs import (
    DEFAULT_LENGTH_TOLERANCE_MS,
    DEFAULT_MAX_NONFINITE_FRACTION,
    prepare_batch,
)
from soundscape.frontend_params import FeatureParams as FrontendParams
from soundscape.ort_sessions import import_onnxruntime, session_options
from soundscape.ort_sessions import providers as _providers

if TYPE_CHECKING:

    from soundscape.settings import Settings

ArrayBatch = np.ndarray | Sequence[np.ndarray]
FrontendPath = Literal["auto", "fft", "graph"]
FRONTEND_PATHS: tuple[str, ...] = ("auto", "fft", "graph")
#: Threads the FFT front-end splits a batch across when none are configured: one per core
#: (its FFTs and ufuncs release the GIL; docs/benchmarks.md has the measurement).
FFT_THREADS = max(1, os.cpu_count() or 1)


def default_lanes(device: str, cores: int | None = None) -> int:
    """Lanes when none are configured: 2 on a CPU with at least 2 cores (each with half
    the cores), 1 on a GPU (one stream of large batches suits it)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return 2 if device == "cpu" and cores >= 2 else 1


@dataclass
class ScoreResult:
    """Probabilities for a batch; rows of refused items are NaN and named in `errors`."""

    probabilities: np.ndarray  # [items, classes] float32
    errors: dict[int, str] = field(default_factory=dict)  # item index -> why it was refused
    # Seconds per graph role over the whole batch (frontend, embedder, the branches, meta),
    # so they add up to the inference; `seconds` is the whole call, input checks included.
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    #: How the "frontend" stage ran for score_audio: "fft" or "graph" (None: no front-end).
    frontend_path: str | None = None

    @property
    def ok(self) -> np.ndarray:
        """Mask of the items that were scored."""
        mask = np.ones(len(self.probabilities), dtype=bool)
        mask[list(self.errors)] = False
        return mask


class _Buffers:
    """float32 tensors of [rows, *shape] on the device, grown only when a batch needs more.

    `get` hands out the first `rows` rows: on the CPU a numpy view (bound without a copy),
    on a GPU the OrtValue itself (bound by pointer with the batch's shape).
    """

    def __init__(self, ort_module: Any, device: str, device_id: int) -> None:
        self._ort = ort_module
        self._device = device
        self._device_id = device_id
        self._store: dict[str, tuple[int, Any]] = {}

    def get(self, key: str, rows: int, shape: tuple[int, ...]) -> Any:
        capacity, buffer = self._store.get(key, (0, None))
        if rows > capacity:
            if self._device == "cpu":
                buffer = np.empty((rows, *shape), dtype=np.float32)
            else:
                buffer = self._ort.OrtValue.ortvalue_from_shape_and_type(
                    (rows, *shape), np.float32, self._device, self._device_id
                )
            self._store[key] = (rows, buffer)
        return buffer[:rows] if isinstance(buffer, np.ndarray) else buffer

    @staticmethod
    def pointer(buffer: Any) -> int:
        return int(buffer.ctypes.data) if isinstance(buffer, np.ndarray) else int(buffer.data_ptr())

    @staticmethod
    def to_host(buffer: Any, rows: int) -> np.ndarray:
        """The first `rows` rows as a numpy array (a view on the CPU: copy before reuse)."""
        host = buffer if isinstance(buffer, np.ndarray) else buffer.numpy()
        return host[:rows]


@dataclass
class _Lane:
    """One lane's buffers and FFT front-end: a lane's stages write only into its own, and
    its front-end's threads are its own (a shared pool would make the lanes queue for
    each other's threads)."""

    device: _Buffers
    host: _Buffers
    fft: Any = None


class _Graph:
    """One ONNX session of the bundle, checked against its manifest entry."""

    def __init__(self, ort_module: Any, bundle: Bundle, role: str, options: Any,
                 providers: list[Any]) -> None:
        path = bundle.path(role)
        entry = bundle.manifest.graphs[role]
        try:
            self.session = ort_module.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"{path}: onnxruntime cannot load it ({exc})") from None
        check_graph_io(path, entry.inputs, entry.outputs, self.session)
        for spec in [*entry.inputs, *entry.outputs]:
            if spec.dtype != "float32":
                raise BundleError(f"{path}: {spec.describe()}; this runtime feeds and reads float32",
                                  hint="convert with float32 inputs and outputs (keep_io_types)")
        self.role = role
        self.inputs = {s.name: tuple(int(d) for d in s.shape[1:]) for s in entry.inputs}
        self.outputs = {s.name: tuple(int(d) for d in s.shape[1:]) for s in entry.outputs}


class FusionModel:
    """A loaded, verified bundle that scores batches. One per thread of work (it is locked)."""

    def __init__(
        self,
        bundle: Bundle | Path | str,
        *,
        device: str = "auto",
        device_id: int = 0,
        max_batch: int = 256,
        intra_op_threads: int = 0,
        length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
        max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
        frontend_path: FrontendPath = "auto",
        frontend_threads: int = 0,
        lanes: int = 0,
    ) -> None:
        """`lanes` 0: one when `intra_op_threads` is set (the caller chose the threads),
        else `default_lanes`; with several lanes, `intra_op_threads` 0 gives each lane's
        sessions cores / lanes threads."""
        onnxruntime = import_onnxruntime()
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.max_batch = max_batch
        self.length_tolerance_ms = length_tolerance_ms
        self.max_nonfinite_fraction = max_nonfinite_fraction
        self.device, providers = _providers(onnxruntime, device, device_id)
        self.lanes = lanes if lanes > 0 else 1 if intra_op_threads else default_lanes(self.device)
        if self.lanes > 1 and not intra_op_threads:
            intra_op_threads = max(1, (os.cpu_count() or 1) // self.lanes)
        options = session_options(onnxruntime, intra_op_threads)
        self._graphs = {
            role: _Graph(onnxruntime, self.bundle, role, options, providers)
            for role in self.bundle.manifest.graphs
        }
        self._audio_embedder = self.bundle.manifest.audio_embedder
        self._lanes = [_Lane(_Buffers(onnxruntime, self.device, device_id),
                             _Buffers(onnxruntime, "cpu", 0)) for _ in range(self.lanes)]
        self._lane_pool = (ThreadPoolExecutor(self.lanes - 1, thread_name_prefix="lane")
                           if self.lanes > 1 else None)
        self._device_id = device_id
        self._lock = threading.Lock()
        #: The front-end's form: "fft", "graph", or None (a bundle without frontend.onnx).
        self.frontend_path: str | None = None
        self.frontend_path_reason = ""
        self._choose_frontend(frontend_path, frontend_threads or intra_op_threads)

    @classmethod
    def from_settings(cls, settings: Settings, bundle: Bundle | Path | str) -> FusionModel:
        cfg = settings.models
        return cls(bundle, device=cfg.device, device_id=cfg.device_id,
                   max_batch=cfg.max_batch, intra_op_threads=cfg.intra_op_threads,
                   length_tolerance_ms=settings.frontend.length_tolerance_ms,
                   max_nonfinite_fraction=settings.frontend.max_nonfinite_fraction,
                   frontend_path=settings.frontend.frontend_path, lanes=cfg.lanes)

    def _choose_frontend(self, path: str, threads: int) -> None:
        """Pick the front-end's form (see the module docstring); the reason is kept in
        `frontend_path_reason` for logs and the benchmark."""
        if path not in FRONTEND_PATHS:
            raise ValueError(f"frontend_path must be one of {FRONTEND_PATHS}, not {path!r}")
        if not self.has_frontend:
            self.frontend_path_reason = "the bundle has no front-end"
            return
        self.frontend_path = "graph"
        if path == "graph":
            self.frontend_path_reason = "frontend_path is graph"
            return
        if path == "auto" and self.device != "cpu":
            self.frontend_path_reason = f"auto on {self.device}: the MatMul graph suits it"
            return
        try:
            from soundscape.frontend_fft import FFTFrontEnd, is_standard_frontend
        except ImportError as exc:  # scipy comes with the serve extra; without it, the graph
            self.frontend_path_reason = f"the FFT front-end needs scipy ({exc})"
            return
        params = is_standard_frontend(self._graphs[FRONTEND].session.get_modelmeta(),
                                      self.bundle.manifest.features.model_dump())
        if params is None:
            self.frontend_path_reason = ("frontend.onnx is not the front-end this project "
                                         "builds for the manifest's features: kept as is")
            return
        if not threads:
            threads = max(1, FFT_THREADS // self.lanes)
        for lane in self._lanes:
            lane.fft = FFTFrontEnd(params, threads=threads)
        # The front-end splits work by chunk (lanes, its threads): BLAS threads only spin.
        from soundscape.blas_threads import limit_blas_threads

        limit_blas_threads(1)
        self.frontend_path = "fft"
        self.frontend_path_reason = f"frontend_path {path} on {self.device}"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def has_frontend(self) -> bool:
        return self.bundle.has_frontend

    def input_shapes(self, audio: bool = False) -> dict[str, tuple[int, ...]]:
        """Per-item shapes `score_audio` (audio=True) or `score` expects, by input name."""
        if audio:
            return dict(self._graphs[FRONTEND].inputs) if self.has_frontend else {}
        shapes: dict[str, tuple[int, ...]] = {}
        for role in (EMBEDDER, *BRANCHES):
            shapes.update(self._graphs[role].inputs)
        return {name: shape for name, shape in shapes.items() if name not in ("embedding", "audio")}

    # ---- scoring ------------------------------------------------------------------------
    def score(self, branch_inputs: Mapping[str, ArrayBatch]) -> ScoreResult:
        """Score branch inputs: `mel`, `mel_aug`, `waveform` (and `embedding`, which skips
        the embedder), each a [batch, ...] float32 array or a sequence of per-item arrays."""
        expected = self.input_shapes()
        if "embedding" in branch_inputs or self._audio_embedder is not None:
            if "embedding" not in branch_inputs:
                raise ValueError("this bundle's embedder reads audio (audio_embedder): pass "
                                 "`embedding`, or score the audio with score_audio()")
            expected["embedding"] = self._graphs["embed_classifier"].inputs["embedding"]
        missing = sorted(set(expected) - set(branch_inputs))
        if missing:
            raise ValueError(f"score() needs the inputs {sorted(expected)}; missing {missing}")
        return self._score({name: branch_inputs[name] for name in expected}, expected, audio=False)

    def score_audio(self, pcm_batch: ArrayBatch) -> ScoreResult:
        """Score 10 s mono PCM clips (front-end -> embedder -> branches -> meta).

        Each clip is checked on its own like every front-end input (float or int16 samples,
        within `length_tolerance_ms` of the bundle's length, at most
        `max_nonfinite_fraction` NaN/Inf samples, which become 0): a clip that fails is
        refused with the reason in `errors` and a NaN row, the others are scored.
        """
        if not self.has_frontend:
            raise BundleError(f"{self.bundle.root}: this bundle has no front-end graph",
                              hint="feed branch inputs with score(), or use a bundle with frontend.onnx")
        started = time.perf_counter()
        features = self.bundle.manifest.features.model_dump()
        prepared = prepare_batch(pcm_batch, FrontendParams(**features),
                                 self.length_tolerance_ms, self.max_nonfinite_fraction)
        count = len(prepared.index) + len(prepared.errors)
        expected = self.input_shapes(audio=True)
        (name,) = expected
        inputs: dict[str, Any] = {name: prepared.pcm}
        embed_seconds = 0.0
        if self._audio_embedder is not None and len(prepared.index):
            began = time.perf_counter()
            inputs["embedding"] = self._embed_audio(prepared.pcm)
            expected["embedding"] = self._graphs["embed_classifier"].inputs["embedding"]
            embed_seconds = time.perf_counter() - began
        scored = self._score(inputs, expected, audio=True)
        if embed_seconds:
            scored.timings[EMBEDDER] = scored.timings.get(EMBEDDER, 0.0) + embed_seconds
        probabilities = np.full((count, self.bundle.manifest.num_classes), np.nan, np.float32)
        rows = np.asarray(prepared.index, dtype=np.int64)
        probabilities[rows] = scored.probabilities
        errors = {**prepared.errors, **{prepared.index[i]: why for i, why in scored.errors.items()}}
        return ScoreResult(probabilities, dict(sorted(errors.items())), scored.timings,
                           time.perf_counter() - started, frontend_path=self.frontend_path)

    def _embed_audio(self, pcm: np.ndarray) -> np.ndarray:
        """[items, samples] at the features' rate -> [items, D]: resampled to the audio
        embedder's rate, cut into its windows (as windowed bundles cut them), embedded,
        mean-pooled over each chunk's windows."""
        import soxr

        from soundscape.windowed import window_spans

        params = self._audio_embedder
        assert params is not None
        rate = self.bundle.manifest.features.sample_rate
        resampled = np.stack([soxr.resample(row, rate, params.sample_rate, quality="HQ")
                              for row in np.asarray(pcm, dtype=np.float32)]).astype(np.float32)
        spans = window_spans(resampled.shape[1], params.samples, params.hop_samples)
        windows = np.zeros((len(resampled), len(spans), params.samples), dtype=np.float32)
        for w, (start, end) in enumerate(spans):
            stop = min(end, resampled.shape[1])
            windows[:, w, :stop - start] = resampled[:, start:stop]
        flat = windows.reshape(-1, params.samples)
        session = self._graphs[EMBEDDER].session
        with self._lock:
            parts = [session.run(["embedding"], {"audio": flat[i:i + self.max_batch]})[0]
                     for i in range(0, len(flat), self.max_batch)]
        return np.concatenate(parts).reshape(len(resampled), len(spans), -1).mean(axis=1)

    def branch_probabilities(self, branch_inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The meta model's input for a clean batch: [batch, 4C] sigmoids (for calibration)."""
        with self._lock:
            feeds = {name: _host(value) for name, value in branch_inputs.items()}
            rows = len(next(iter(feeds.values())))
            return self._branch_probs(feeds, rows, {}, self._lanes[0]).copy()

    def _score(
        self, inputs: Mapping[str, ArrayBatch], expected: dict[str, tuple[int, ...]], audio: bool
    ) -> ScoreResult:
        started = time.perf_counter()
        arrays, errors, count = _validate(inputs, expected)
        probabilities = np.full((count, self.bundle.manifest.num_classes), np.nan, np.float32)
        good = np.array([i for i in range(count) if i not in errors], dtype=np.int64)
        shares = [part for part in np.array_split(good, min(self.lanes, len(good)))] if len(good) else []
        lane_timings: list[dict[str, float]] = [{} for _ in shares]

        def score_share(index: int) -> None:
            share, timings = shares[index], lane_timings[index]
            for start in range(0, len(share), self.max_batch):
                rows = share[start:start + self.max_batch]
                feeds = {name: _gather(array, rows, count) for name, array in arrays.items()}
                probabilities[rows] = self._pipeline(feeds, len(rows), audio, timings,
                                                     self._lanes[index])

        with self._lock:
            if len(shares) > 1 and self._lane_pool is not None:
                others = [self._lane_pool.submit(score_share, i) for i in range(1, len(shares))]
                try:
                    score_share(0)
                finally:
                    for future in others:
                        future.result()  # every lane done before the buffers are reused
            elif shares:
                score_share(0)
        # Lanes run side by side: a stage took as long as its slowest lane.
        timings = {stage: max(t.get(stage, 0.0) for t in lane_timings)
                   for stage in {stage for t in lane_timings for stage in t}}
        bad_rows = [int(i) for i in good if not np.isfinite(probabilities[i]).all()]
        for index in bad_rows:
            errors[index] = "the model produced NaN or Inf for this item"
            probabilities[index] = np.nan
        return ScoreResult(probabilities, dict(sorted(errors.items())), timings,
                           time.perf_counter() - started)

    def _pipeline(
        self, feeds: dict[str, Any], rows: int, audio: bool, timings: dict[str, float],
        lane: _Lane,
    ) -> np.ndarray:
        if audio:
            embedding = feeds.get("embedding")
            if lane.fft is not None:  # set for every lane, or for none
                feeds = self._run_fft(feeds, rows, timings, lane)
            else:
                feeds = self._run(FRONTEND, feeds, rows, timings, lane)
            if embedding is not None:  # from the audio embedder, computed before
                feeds = {**feeds, "embedding": embedding}
        probs = self._branch_probs(feeds, rows, timings, lane)
        meta = self._run(META, {"branch_probs": probs}, rows, timings, lane)["logits"]
        return _sigmoid(lane.device.to_host(meta, rows))

    def _branch_probs(self, feeds: dict[str, Any], rows: int, timings: dict[str, float],
                      lane: _Lane) -> np.ndarray:
        if "embedding" not in feeds:
            feeds = {**feeds, **self._run(EMBEDDER, feeds, rows, timings, lane)}
        logits = [lane.device.to_host(self._run(role, feeds, rows, timings, lane)["logits"], rows)
                  for role in BRANCHES]
        return _sigmoid(np.concatenate(logits, axis=1))

    def _run_fft(
        self, feeds: Mapping[str, Any], rows: int, timings: dict[str, float], lane: _Lane
    ) -> dict[str, Any]:
        """The front-end on the FFT path, into host buffers (the next stages bind them as
        CPU inputs, without a copy on the CPU provider); timed as the "frontend" stage."""
        graph = self._graphs[FRONTEND]
        (name,) = graph.inputs
        outputs = {out: lane.host.get(f"{FRONTEND}.{out}", rows, shape)
                   for out, shape in graph.outputs.items()}
        started = time.perf_counter()
        lane.fft.run(feeds[name], out=outputs)
        timings[FRONTEND] = timings.get(FRONTEND, 0.0) + time.perf_counter() - started
        return outputs

    def _run(
        self, role: str, feeds: Mapping[str, Any], rows: int, timings: dict[str, float],
        lane: _Lane,
    ) -> dict[str, Any]:
        """Run one graph on `rows` items; returns its outputs as device buffers."""
        graph = self._graphs[role]
        binding = graph.session.io_binding()
        for name, shape in graph.inputs.items():
            value = feeds[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:  # a device buffer from an earlier stage
                binding.bind_input(name, self.device, self._device_id, np.float32,
                                   [rows, *shape], lane.device.pointer(value))
        outputs = {}
        for name, shape in graph.outputs.items():
            buffer = lane.device.get(f"{role}.{name}", rows, shape)
            binding.bind_output(name, self.device, self._device_id, np.float32,
                                [rows, *shape], lane.device.pointer(buffer))
            outputs[name] = buffer
        started = time.perf_counter()
        graph.session.run_with_iobinding(binding)
        timings[role] = timings.get(role, 0.0) + time.perf_counter() - started
        return outputs


def _validate(
    inputs: Mapping[str, ArrayBatch], expected: Mapping[str, tuple[int, ...]]
) -> tuple[dict[str, ArrayBatch], dict[int, str], int]:
    """Check every item of every input; returns the inputs, per-item errors and item count."""
    counts = {name: len(value) for name, value in inputs.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"inputs disagree on the batch size: {counts}")
    count = next(iter(counts.values()), 0)
    errors: dict[int, list[str]] = {}
    for name, value in inputs.items():
        shape = expected[name]
        if isinstance(value, np.ndarray):
            problem = _type_problem(value.dtype, value.shape[1:], shape, name)
            bad = np.arange(count) if problem else np.flatnonzero(~_finite_rows(value))
            for index in bad:
                errors.setdefault(int(index), []).append(problem or f"{name} holds NaN or Inf")
            continue
        for index, item in enumerate(value):
            if not isinstance(item, np.ndarray):
                problem = f"{name} is a {type(item).__name__}, not a numpy array"
            else:
                problem = _type_problem(item.dtype, item.shape, shape, name)
                if not problem and not _finite_rows(item[None])[0]:
                    problem = f"{name} holds NaN or Inf"
            if problem:
                errors.setdefault(index, []).append(problem)
    return dict(inputs), {i: "; ".join(p) for i, p in errors.items()}, count


def _type_problem(
    dtype: np.dtype, shape: tuple[int, ...], expected: tuple[int, ...], name: str
) -> str | None:
    if dtype != np.float32:
        return f"{name} has dtype {dtype}, expected float32"
    if tuple(shape) != expected:
        return f"{name} has shape {list(shape)}, expected {list(expected)}"
    return None


def _finite_rows(batch: np.ndarray) -> np.ndarray:
    """Per row: are all values finite? A float64 sum of float32 values cannot overflow, so it
    is finite exactly when every value is, without a temporary as large as the batch."""
    if batch.size == 0:
        return np.ones(len(batch), dtype=bool)
    return np.isfinite(batch.reshape(len(batch), -1).sum(axis=1, dtype=np.float64))


def _gather(value: ArrayBatch, rows: np.ndarray, count: int) -> np.ndarray:
    """The chosen items as one C-contiguous [rows, ...] array (no copy when it is already one)."""
    if isinstance(value, np.ndarray):
        if len(rows) == count and rows[0] == 0 and value.flags.c_contiguous:
            return value
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # a contiguous slice
            return np.ascontiguousarray(value[rows[0]:rows[-1] + 1])
        return np.ascontiguousarray(value[rows])
    return np.stack([value[i] for i in rows])


def _host(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=np.float32)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of large negative logits overflows harmlessly to 0; silence the warning.
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
