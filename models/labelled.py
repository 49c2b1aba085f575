"""Labelled synthetic chunks and their features, computed by the runtime front-end.

The demo bundle trains, tunes and is evaluated on `soundscape.synthetic`'s species mixed
into field backgrounds. Features come from `frontend.onnx` through onnxruntime, the very
graph the bundle ships and the workers run, so the branches learn exactly what they
will be fed. A set is named by its seed; the same seed and count always give the same
arrays, and sets with different seeds draw independent chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from soundscape.models.frontend.runtime import FrontEnd
from soundscape.models.samples import FEATURE_NAMES, SampleSet
from soundscape.synthetic import CHUNK_SECONDS, SAMPLE_RATE, SPECIES_NAMES, soundscape_chunks

#: The data set the demo bundle is trained on, and the one it is evaluated on. Their
#: chunks come from independent seed streams (`chunk_seed`), so no clip is shared.
TRAIN_SEED = 0
EVAL_SEED = 20_250_401


@dataclass
class LabelledSet:
    """Front-end outputs with multi-hot targets, one row per synthetic chunk."""

    arrays: dict[str, np.ndarray]  # waveform [n, samples], mel and mel_aug [n, 1, mels, frames]
    targets: np.ndarray  # [n, C] float32, 1 where a species calls
    seeds: np.ndarray  # [n] the chunk seeds, to regenerate any item
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: Sequence[int] | np.ndarray | slice) -> LabelledSet:
        return LabelledSet({n: a[rows] for n, a in self.arrays.items()}, self.targets[rows],
                           self.seeds[rows], self.labels)

    def sample_set(self, source: str) -> SampleSet:
        """The features alone, as the quantizer and benchmarks take them."""
        return SampleSet({n: self.arrays[n] for n in FEATURE_NAMES}, source)

    def save_features(self, path: Path) -> Path:
        """An .npz of branch inputs (`models quantize --calibration/--held-out` format)."""
        np.savez(path, **{n: self.arrays[n] for n in FEATURE_NAMES})
        return path


def synthetic_pcm_labelled(count: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks `start` .. `start + count - 1` of data set `seed`: ([count, samples] float32
    audio, [count, C] multi-hot targets, [count] chunk seeds)."""
    chunks = list(soundscape_chunks(count, seed, start))
    if not chunks:
        return (np.zeros((0, SAMPLE_RATE * CHUNK_SECONDS), np.float32),
                np.zeros((0, len(SPECIES_NAMES)), np.float32), np.zeros(0, np.int64))
    return (np.stack([c.audio for c in chunks]), np.stack([c.multi_hot() for c in chunks]),
            np.array([c.seed for c in chunks], dtype=np.int64))


def labelled_set(count: int, seed: int, frontend: FrontEnd, *, batch: int = 16,
                 bar: bool = False, desc: str = "chunks") -> LabelledSet:
    """`count` labelled chunks of data set `seed`, through the runtime front-end.

    Made in batches so that only a batch of raw audio is held besides the features.
    """
    samples, params = frontend.params.samples, frontend.params
    arrays = {
        "waveform": np.empty((count, samples), np.float32),
        "mel": np.empty((count, 1, params.n_mels, params.frames), np.float32),
        "mel_aug": np.empty((count, 1, params.n_mels, params.frames), np.float32),
    }
    targets = np.empty((count, len(SPECIES_NAMES)), np.float32)
    seeds = np.empty(count, np.int64)
    with tqdm(total=count, desc=desc, unit="chunk", disable=not bar, leave=False) as progress:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            pcm, targets[start:start + size], seeds[start:start + size] = \
                synthetic_pcm_labelled(size, seed, start)
            for name, value in frontend.run(pcm).items():
                arrays[name][start:start + size] = value
            progress.update(size)
    return LabelledSet(arrays, targets, seeds, SPECIES_NAMES)
