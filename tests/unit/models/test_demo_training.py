"""train-demo's pieces that need no bundle: seeded training, the splits, labelled sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from soundscape.errors import UserError
from soundscape.models.demo import MIN_CHUNKS, split
from soundscape.models.labelled import synthetic_pcm_labelled
from soundscape.models.training import FitOptions, _shift, fit, predict
from soundscape.synthetic import soundscape_chunks


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((256, 1, 4, 16)).astype(np.float32)
    # label 0: energy in the top row; label 1: in the bottom row
    y = np.stack([x[:, 0, 0].mean(1) > 0, x[:, 0, 3].mean(1) > 0], axis=1).astype(np.float32)
    return x, y


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4 * 16), nn.Dropout(0.1),
                         nn.Linear(4 * 16, 2))


def _train(seed: int) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    model = _model()
    x, y = _data(np.random.default_rng(0))
    losses = fit(model, x, y, FitOptions(epochs=30, batch=32, lr=3e-2, time_shift=False),
                 torch.Generator().manual_seed(seed))
    return model, losses


def test_the_same_seed_gives_the_same_weights_and_training_learns() -> None:
    a, losses = _train(3)
    b, _ = _train(3)
    c, _ = _train(4)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                     c.state_dict().values(), strict=True))
    assert losses[-1] < 0.7 * losses[0]
    x, y = _data(np.random.default_rng(1))
    accuracy = ((predict(a, x) > 0.5) == (y > 0.5)).mean()
    assert accuracy > 0.8


def test_time_shift_rolls_each_item_on_its_own() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 1, 3, 5)
    shifted = _shift(x, torch.Generator().manual_seed(0))
    for item in range(2):
        rolls = [torch.equal(torch.roll(x[item], k, dims=-1), shifted[item]) for k in range(5)]
        assert sum(rolls) == 1


def test_splits_are_disjoint_seeded_and_cover_every_chunk() -> None:
    rows, meta, tune = split(100, 7)
    assert sorted([*rows, *meta, *tune]) == list(range(100))
    assert (len(rows), len(meta), len(tune)) == (65, 20, 15)
    assert all(np.array_equal(a, b) for a, b in zip(split(100, 7), (rows, meta, tune)))
    assert not np.array_equal(split(100, 8)[0], rows)
    with pytest.raises(UserError, match="too few"):
        split(MIN_CHUNKS - 1, 0)


def test_labelled_audio_is_the_synthetic_data_set() -> None:
    pcm, targets, seeds = synthetic_pcm_labelled(2, 11, start=3)
    expected = list(soundscape_chunks(2, seed=11, start=3))
    assert [c.seed for c in expected] == seeds.tolist()
    np.testing.assert_array_equal(pcm, np.stack([c.audio for c in expected]))
    np.testing.assert_array_equal(targets, np.stack([c.multi_hot() for c in expected]))
