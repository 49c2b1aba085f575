"""Augmentations for training on few labelled recordings (numpy, seeded Generators).

On PCM, before the front-end (so the branches still see exactly the worker's features):
background mixing, random gain and a time shift. On the front-end's outputs and the
targets, per batch: mixup and SpecAugment's time and frequency masks. Every function is
pure: the same inputs and generator state give the same output, and inputs are never
changed in place.
"""

from __future__ import annotations

import numpy as np

#: Gain range of a negative (unlabelled) chunk mixed in as background, and of a labelled
#: chunk mixed in at low gain (its labels join the item's: its calls are still audible).
BACKGROUND_GAIN = (0.3, 1.0)
LABELLED_GAIN = (0.1, 0.3)


def random_gain(pcm: np.ndarray, rng: np.random.Generator, low_db: float = -6.0,
                high_db: float = 6.0) -> np.ndarray:
    """The clip scaled by a gain drawn uniformly in decibels (recorders differ in level)."""
    return (pcm * np.float32(10 ** (rng.uniform(low_db, high_db) / 20))).astype(np.float32)


def time_shift(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip rolled along time by a random offset (a call may fall anywhere; nothing is
    lost, the clip wraps around)."""
    return np.roll(pcm, int(rng.integers(0, pcm.shape[-1])), axis=-1)


def mix_background(pcm: np.ndarray, target: np.ndarray, pool: np.ndarray, pool_targets: np.ndarray,
                   rng: np.random.Generator, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The clip with another chunk of `pool` mixed in: a negative one (no label) where
    there is any, at BACKGROUND_GAIN; else any other chunk at LABELLED_GAIN, whose labels
    are added to the target. `exclude`: the clip's own index in the pool.

    Returns (pcm, target); both unchanged when the pool holds no other chunk.
    """
    others = np.array([i for i in range(len(pool)) if i != exclude], dtype=np.int64)
    if not len(others):
        return pcm.copy(), target.copy()
    negative = others[~(pool_targets[others] > 0.5).any(axis=1)]
    if len(negative):
        pick, gain_range = int(rng.choice(negative)), BACKGROUND_GAIN
    else:
        pick, gain_range = int(rng.choice(others)), LABELLED_GAIN
    gain = np.float32(rng.uniform(*gain_range))
    mixed = (pcm + gain * pool[pick]).astype(np.float32)
    return mixed, np.maximum(target, pool_targets[pick]).astype(target.dtype)


def augment_pcm(pcm: np.ndarray, target: np.ndarray, pool: np.ndarray, pool_targets: np.ndarray,
                rng: np.random.Generator, index: int | None = None,
                background: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of a clip: background mixed in with probability `background`,
    then a random gain and a time shift."""
    out, truth = pcm, target
    if rng.random() < background:
        out, truth = mix_background(out, truth, pool, pool_targets, rng, exclude=index)
    out = time_shift(random_gain(out, rng), rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32), truth.astype(np.float32)


def mixup(inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator,
          alpha: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Each item blended with another of the batch: x = l*x_i + (1-l)*x_j and the same
    for the targets, with l ~ Beta(alpha, alpha) folded to >= 0.5 (the item stays the
    main one). Returns new arrays."""
    if len(inputs) < 2:
        return inputs.copy(), targets.copy()
    weight = rng.beta(alpha, alpha, size=len(inputs)).astype(np.float32)
    weight = np.maximum(weight, 1 - weight)
    partner = rng.permutation(len(inputs))
    shape = (-1,) + (1,) * (inputs.ndim - 1)
    x = weight.reshape(shape) * inputs + (1 - weight.reshape(shape)) * inputs[partner]
    y = weight[:, None] * targets + (1 - weight[:, None]) * targets[partner]
    return x.astype(inputs.dtype), y.astype(targets.dtype)


def spec_augment(mel: np.ndarray, rng: np.random.Generator, time_masks: int = 2,
                 time_width: int = 30, freq_masks: int = 2, freq_width: int = 8) -> np.ndarray:
    """SpecAugment on [batch, ..., mels, frames]: per item, `time_masks` bands of up to
    `time_width` frames and `freq_masks` bands of up to `freq_width` mel bins set to the
    item's mean (a masked band then looks like neither silence nor a call)."""
    out = np.array(mel, dtype=np.float32, copy=True)
    mels, frames = out.shape[-2], out.shape[-1]
    for item in out:
        fill = float(item.mean())
        for _ in range(time_masks):
            width = int(rng.integers(0, min(time_width, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            item[..., start:start + width] = fill
        for _ in range(freq_masks):
            width = int(rng.integers(0, min(freq_width, mels) + 1))
            start = int(rng.integers(0, mels - width + 1))
            item[..., start:start + width, :] = fill
    return out
