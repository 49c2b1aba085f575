"""Neighbour-chunk smoothing: weights, edges, gaps, interleaved groups, refused chunks."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.models.smoothing import SmoothingOptions, smooth


def test_the_middle_of_a_run_mixes_a_quarter_of_each_neighbour() -> None:
    probs = np.array([[0.0], [1.0], [0.0]])
    out = smooth(probs, [("s", 0), ("s", 1), ("s", 2)])
    # ends: 0.5 * self + 0.25 * the one neighbour, over 0.75
    np.testing.assert_allclose(out, [[1 / 3], [0.5], [1 / 3]])
    assert out.dtype == probs.dtype


def test_gaps_and_lone_chunks_renormalise() -> None:
    probs = np.array([[0.8, 0.0], [0.2, 0.4], [0.6, 0.6]])
    out = smooth(probs, [("s", 0), ("s", 1), ("s", 5)])  # position 5 has no neighbour
    np.testing.assert_allclose(out[0], (0.5 * probs[0] + 0.25 * probs[1]) / 0.75)
    np.testing.assert_allclose(out[1], (0.5 * probs[1] + 0.25 * probs[0]) / 0.75)
    np.testing.assert_allclose(out[2], probs[2])


def test_groups_interleaved_and_out_of_order_never_mix() -> None:
    keys = [("b", 1), ("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    probs = np.array([[1.0], [0.0], [0.0], [0.0], [0.0]])
    out = smooth(probs, keys)
    np.testing.assert_allclose(out[:, 0], [2 / 3, 0.0, 1 / 3, 0.0, 0.0])
    # the same chunks in key order give the same figures
    order = sorted(range(5), key=lambda i: keys[i])
    np.testing.assert_allclose(smooth(probs[order], [keys[i] for i in order]), out[order])


def test_weights_apply_as_given_and_identity_keeps_the_figures() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((6, 4)).astype(np.float32)
    keys = [("s", i) for i in range(6)]
    np.testing.assert_array_equal(smooth(probs, keys, SmoothingOptions(0.0, 1.0, 0.0)), probs)
    forward = smooth(probs, keys, SmoothingOptions(previous=0.0, current=1.0, next=1.0))
    np.testing.assert_allclose(forward[:5], (probs[:5] + probs[1:]) / 2, rtol=1e-6)
    np.testing.assert_allclose(forward[5], probs[5])


def test_refused_chunks_stay_refused_and_are_no_neighbour() -> None:
    probs = np.array([[0.2], [np.nan], [0.6], [1.0]])
    out = smooth(probs, [("s", 0), ("s", 1), ("s", 2), ("s", 3)])
    assert out[0, 0] == pytest.approx(0.2) and np.isnan(out[1, 0])
    assert out[2, 0] == pytest.approx((0.5 * 0.6 + 0.25 * 1.0) / 0.75)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="share the key"):
        smooth(np.zeros((2, 1)), [("s", 0), ("s", 0)])
    with pytest.raises(ValueError, match="n keys"):
        smooth(np.zeros((2, 1)), [("s", 0)])
    with pytest.raises(ValueError, match="negative"):
        SmoothingOptions(previous=-0.1)
    with pytest.raises(ValueError, match="positive"):
        SmoothingOptions(current=0.0)
