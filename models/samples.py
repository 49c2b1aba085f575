"""Sets of branch inputs: int8 calibration, held-out agreement checks, benchmark feeds.

Deployments should calibrate on features of their own recordings: an .npz holding the
arrays `waveform`, `mel` and `mel_aug` ([n, ...] float32, as the bundle's front-end makes
them). Without one, sets are made from synthetic field audio (soundscape.synthetic)
through the bundle's front-end graph when there is one, else through the runtime
front-end built in memory for the bundle's features (models/frontend), so every set holds
exactly what a worker would compute. Calibration and held-out sets never share a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundscape.bundle import BundleFeatures
from soundscape.errors import UserError
from soundscape.synthetic import field_chunk

#: Front-end outputs: the inputs of the embedder and the branches.
FEATURE_NAMES = ("waveform", "mel", "mel_aug")
CALIBRATION_SEED = 0
HELD_OUT_SEED = 1_000_000

Frontend = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class SampleSet:
    arrays: dict[str, np.ndarray]  # name -> [n, ...] float32
    source: str  # how it was made, for reports and the manifest

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), size):
            yield {name: array[start:start + size] for name, array in self.arrays.items()}


def feature_shapes(features: BundleFeatures) -> dict[str, tuple[int, ...]]:
    mel = (1, features.n_mels, features.frames)
    return {"waveform": (features.samples,), "mel": mel, "mel_aug": mel}


def random_input(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values in each input's real range (dB mels, [-1, 1] audio, probabilities)."""
    if name in ("mel", "mel_aug"):
        return rng.uniform(-80.0, 0.0, shape).astype(np.float32)
    if name in ("waveform", "pcm"):
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    if name == "branch_probs":
        return rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return np.maximum(rng.standard_normal(shape), 0).astype(np.float32)  # ReLU embeddings


def synthetic_pcm(count: int, first_seed: int, features: BundleFeatures) -> np.ndarray:
    """[count, samples] float32 field-like clips, peak-normalised, 0-5 calls each."""
    seconds = -(-features.samples // features.sample_rate)
    clips = np.empty((count, features.samples), dtype=np.float32)
    for row, seed in enumerate(range(first_seed, first_seed + count)):
        clip = field_chunk(seed, features.sample_rate, seconds, calls=seed % 6)
        clip = clip[: features.samples]
        clips[row] = clip / max(float(np.abs(clip).max()), 1e-6)
    return clips


def runtime_frontend(features: BundleFeatures) -> Frontend:
    """The runtime front-end (frontend.onnx's graph) for `features`, built in memory."""
    from soundscape.frontend_params import FeatureParams as FrontendParams
    from soundscape.models.frontend.runtime import FrontEnd

    frontend = FrontEnd(params=FrontendParams(**features.model_dump()),
                        providers=["CPUExecutionProvider"])
    return lambda pcm: _batched(frontend.run, pcm)


def _batched(run: Callable[[np.ndarray], dict[str, np.ndarray]], pcm: np.ndarray,
             batch: int = 16) -> dict[str, np.ndarray]:
    parts = [run(pcm[start:start + batch]) for start in range(0, len(pcm), batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def run_onnx(path: Path, feeds: dict[str, np.ndarray], batch: int = 16) -> dict[str, np.ndarray]:
    """Run one graph on the CPU over [n, ...] inputs in batches; outputs by name."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, count, batch):
        values = session.run(names, {k: v[start:start + batch] for k, v in feeds.items()})
        for name, value in zip(names, values):
            parts[name].append(value)
    return {n: np.concatenate(v) for n, v in parts.items()}


def onnx_frontend(path: Path) -> Frontend:
    """A front-end graph (pcm -> waveform, mel, mel_aug) as a function of PCM batches."""
    return lambda pcm: run_onnx(path, {"pcm": pcm})


def synthetic_set(
    count: int, first_seed: int, features: BundleFeatures, frontend: Frontend | None = None
) -> SampleSet:
    pcm = synthetic_pcm(count, first_seed, features)
    arrays = (frontend or runtime_frontend(features))(pcm)
    how = "the bundle's front-end" if frontend else "the runtime front-end"
    return SampleSet({n: arrays[n] for n in FEATURE_NAMES},
                     f"{count} synthetic field clips (seeds {first_seed}-{first_seed + count - 1}) "
                     f"through {how}")


def load_set(path: Path, features: BundleFeatures) -> SampleSet:
    """Read an .npz of branch inputs, checking names, shapes and values."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as .npz ({exc})") from None
    shapes = feature_shapes(features)
    missing = [n for n in FEATURE_NAMES if n not in data.files]
    if missing:
        raise UserError(f"{path}: lacks the arrays {missing}",
                        hint=f"np.savez(path, {', '.join(f'{n}=...' for n in FEATURE_NAMES)})")
    arrays = {n: np.ascontiguousarray(data[n], dtype=np.float32) for n in FEATURE_NAMES}
    counts = {len(a) for a in arrays.values()}
    for name, array in arrays.items():
        if array.shape[1:] != shapes[name]:
            raise UserError(f"{path}: {name} has shape {list(array.shape)}, "
                            f"expected [n, {', '.join(map(str, shapes[name]))}]")
        if not np.isfinite(array).all():
            raise UserError(f"{path}: {name} holds NaN or Inf")
    if len(counts) != 1 or 0 in counts:
        raise UserError(f"{path}: arrays must hold the same, non-zero number of items")
    return SampleSet(arrays, f"{counts.pop()} items from {path.name}")


def sample_set(
    path: Path | None, count: int, first_seed: int, features: BundleFeatures,
    frontend: Frontend | None = None,
) -> SampleSet:
    """The user's .npz when given, else `count` synthetic clips from `first_seed`."""
    if path is not None:
        return load_set(path, features)
    return synthetic_set(count, first_seed, features, frontend)
