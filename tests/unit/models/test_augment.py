"""The training augmentations: shapes kept, the same generator state gives the same output,
inputs untouched, and labels follow what is mixed in."""

from __future__ import annotations

import numpy as np

from soundscape.models.augment import (
    BACKGROUND_GAIN,
    LABELLED_GAIN,
    augment_pcm,
    mix_background,
    mixup,
    random_gain,
    spec_augment,
    time_shift,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pool() -> tuple[np.ndarray, np.ndarray]:
    """Four clips: 0 and 1 labelled, 2 a negative, 3 labelled."""
    pcm = np.stack([np.full(100, v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)])
    targets = np.array([[1, 0], [0, 1], [0, 0], [1, 1]], np.float32)
    return pcm, targets


def test_gain_and_shift_keep_shape_and_energy_and_repeat() -> None:
    pcm = _rng().standard_normal(1000).astype(np.float32)
    before = pcm.copy()
    gained = random_gain(pcm, _rng(1))
    ratio = np.abs(gained).max() / np.abs(pcm).max()
    assert gained.shape == pcm.shape and gained.dtype == np.float32
    assert 10 ** (-6 / 20) - 1e-6 <= ratio <= 10 ** (6 / 20) + 1e-6
    shifted = time_shift(pcm, _rng(2))
    assert np.allclose(np.sort(shifted), np.sort(pcm))  # a roll loses nothing
    assert np.array_equal(shifted, time_shift(pcm, _rng(2)))
    assert np.array_equal(pcm, before)


def test_background_prefers_a_negative_and_keeps_the_labels() -> None:
    pool, truth = _pool()
    mixed, target = mix_background(pool[0], truth[0], pool, truth, _rng(), exclude=0)
    gain = (mixed[0] - 0.1) / 0.3  # only clip 2 is negative
    assert BACKGROUND_GAIN[0] - 1e-6 <= gain <= BACKGROUND_GAIN[1] + 1e-6
    assert target.tolist() == [1, 0]
    assert np.array_equal(pool, _pool()[0])


def test_without_negatives_a_labelled_chunk_is_mixed_low_and_its_labels_added() -> None:
    pool, truth = _pool()
    pool, truth = pool[[0, 1]], truth[[0, 1]]
    mixed, target = mix_background(pool[0], truth[0], pool, truth, _rng(), exclude=0)
    gain = (mixed[0] - 0.1) / 0.2
    assert LABELLED_GAIN[0] - 1e-6 <= gain <= LABELLED_GAIN[1] + 1e-6
    assert target.tolist() == [1, 1]


def test_a_pool_of_one_leaves_the_clip_alone() -> None:
    pool, truth = _pool()
    mixed, target = mix_background(pool[0], truth[0], pool[:1], truth[:1], _rng(), exclude=0)
    assert np.array_equal(mixed, pool[0]) and np.array_equal(target, truth[0])


def test_augment_pcm_is_deterministic_and_bounded() -> None:
    pool, truth = _pool()
    pool = pool * 5  # loud: the copy is clipped to [-1, 1]
    one = augment_pcm(pool[1], truth[1], pool, truth, _rng(3), index=1, background=1.0)
    two = augment_pcm(pool[1], truth[1], pool, truth, _rng(3), index=1, background=1.0)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    assert one[0].shape == (100,) and np.abs(one[0]).max() <= 1.0
    assert one[1].tolist() == [0, 1]  # clip 2, the negative, was mixed in


def test_mixup_blends_inputs_and_targets_with_the_same_weight() -> None:
    x = np.stack([np.full((1, 4, 5), v, np.float32) for v in (0.0, 1.0, 2.0)])
    y = np.eye(3, dtype=np.float32)
    mixed_x, mixed_y = mixup(x, y, _rng(4))
    assert mixed_x.shape == x.shape and mixed_y.shape == y.shape
    assert np.allclose(mixed_y.sum(axis=1), 1.0)
    for item in range(3):
        assert mixed_y[item, item] >= 0.5 - 1e-6  # the item stays the main one
        # the input is the same blend as the target: sum_j y_j * value_j
        assert np.isclose(mixed_x[item, 0, 0, 0], float(mixed_y[item] @ np.arange(3)), atol=1e-5)
    again = mixup(x, y, _rng(4))
    assert np.array_equal(again[0], mixed_x) and np.array_equal(again[1], mixed_y)
    assert np.array_equal(mixup(x[:1], y[:1], _rng())[0], x[:1])


def test_spec_augment_masks_bands_with_the_items_mean() -> None:
    mel = _rng(5).standard_normal((2, 1, 64, 313)).astype(np.float32) * 10 - 40
    before = mel.copy()
    out = spec_augment(mel, _rng(6), time_width=30, freq_width=8)
    assert out.shape == mel.shape and out.dtype == np.float32
    assert np.array_equal(mel, before)
    changed = out != mel
    assert changed.any()
    for item in range(2):
        assert np.allclose(out[item][changed[item]], mel[item].mean(), atol=1e-4)
        columns = changed[item, 0].all(axis=0).sum()  # fully masked frames
        rows = changed[item, 0].all(axis=1).sum()  # fully masked mel bins
        assert columns <= 60 and rows <= 16
    assert np.array_equal(out, spec_augment(mel, _rng(6), time_width=30, freq_width=8))
