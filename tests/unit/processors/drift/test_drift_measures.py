"""Distances and tests over counts agree with their textbook definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from soundscape.processors.drift import measures
from soundscape.processors.drift.summary import Binning


def test_js_divergence_is_zero_for_equal_one_for_disjoint_and_matches_scipy() -> None:
    assert measures.js_divergence([3, 1, 0], [6, 2, 0]) == pytest.approx(0.0, abs=1e-12)
    assert measures.js_divergence([5, 0], [0, 7]) == pytest.approx(1.0)
    a, b = np.array([10, 5, 1, 0]), np.array([2, 2, 8, 4])
    expected = jensenshannon(a / a.sum(), b / b.sum(), base=2) ** 2
    assert measures.js_divergence(a, b) == pytest.approx(expected)
    assert measures.js_divergence(a, b) == pytest.approx(measures.js_divergence(b, a))


def test_psi_follows_its_formula_with_smoothed_shares() -> None:
    actual, expected = np.array([50.0, 30, 20]), np.array([40.0, 40, 20])
    p = (actual + 0.5) / (actual.sum() + 1.5)
    q = (expected + 0.5) / (expected.sum() + 1.5)
    assert measures.psi(actual, expected) == pytest.approx(float(np.sum((p - q) * np.log(p / q))))
    assert measures.psi([10, 0], [0, 10]) > 2  # an empty category does not divide by zero


def test_homogeneity_test_tells_noise_from_change() -> None:
    rng = np.random.default_rng(1)
    shares = [0.5, 0.3, 0.2]
    same = measures.homogeneity_p_value(rng.multinomial(300, shares), rng.multinomial(900, shares))
    changed = measures.homogeneity_p_value(rng.multinomial(300, [0.2, 0.3, 0.5]),
                                           rng.multinomial(900, shares))
    assert same > 0.01 and changed < 1e-6
    assert measures.homogeneity_p_value([5, 0], [7, 0]) == 1.0  # one category: no evidence


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3])
def test_ks_from_histograms_approximates_the_exact_two_sample_test(shift: float) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.beta(5, 2, 400), np.clip(rng.beta(5, 2, 1200) - shift, 0, 1)
    binning = Binning(0.0, 1.0, 100)
    hist = [np.bincount([binning.index(v) for v in x], minlength=100) for x in (a, b)]
    d, p = measures.ks_from_histograms(*hist)
    exact = ks_2samp(a, b)
    assert d == pytest.approx(exact.statistic, abs=0.02)  # at most one bin's mass off
    assert (p < 0.001) == (exact.pvalue < 0.001)


def test_histogram_quantile_interpolates_within_its_bin() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(-50, 4, 2000)
    binning = Binning(-120.0, 0.0, 240)
    counts = np.bincount([binning.index(v) for v in values], minlength=240)
    assert measures.histogram_quantile(counts, -120, 0, 0.5) == pytest.approx(
        np.median(values), abs=0.25)
    with pytest.raises(ValueError):
        measures.histogram_quantile(np.zeros(4), 0, 1, 0.5)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        measures.js_divergence([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        measures.psi([0, 0], [1, 1])
