"""Distances and two-sample tests between two distributions given as counts.

Windows are summarised as counts (label counts, fixed-bin histograms) so that panes merge
into windows and windows into references by adding; every measure here therefore takes
counts over the same categories or bins, never raw samples.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import kolmogorov
from scipy.stats import chi2_contingency

#: Pseudo-count added to every category before PSI's log ratio (Jeffreys' prior).
PSEUDO_COUNT = 0.5


def _pair(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"counts must be two 1-D arrays of one length, got {x.shape} {y.shape}")
    if (x < 0).any() or (y < 0).any() or x.sum() <= 0 or y.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    return x, y


def js_divergence(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Jensen-Shannon divergence in bits: 0 for equal distributions, 1 for disjoint ones."""
    x, y = _pair(a, b)
    p, q = x / x.sum(), y / y.sum()
    m = (p + q) / 2

    def kl(u: np.ndarray) -> float:
        mask = u > 0
        return float(np.sum(u[mask] * np.log2(u[mask] / m[mask])))

    return min(max((kl(p) + kl(q)) / 2, 0.0), 1.0)


def psi(actual: np.ndarray | list[float], expected: np.ndarray | list[float]) -> float:
    """Population stability index of `actual` against `expected` (both smoothed counts)."""
    x, y = _pair(actual, expected)
    p = (x + PSEUDO_COUNT) / (x.sum() + PSEUDO_COUNT * x.size)
    q = (y + PSEUDO_COUNT) / (y.sum() + PSEUDO_COUNT * y.size)
    return float(np.sum((p - q) * np.log(p / q)))


def homogeneity_p_value(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Chi-square test that two count vectors come from one distribution (p-value)."""
    x, y = _pair(a, b)
    used = (x + y) > 0
    if used.sum() < 2:
        return 1.0
    table = np.vstack([x[used], y[used]])
    return float(chi2_contingency(table, correction=False).pvalue)


def ks_from_histograms(
    a: np.ndarray | list[float], b: np.ndarray | list[float]
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (D, p-value) of samples binned on the same edges.

    D is taken at the bin edges, so it is at most the exact statistic (by the mass of one
    bin); the p-value is the asymptotic Kolmogorov law with Stephens' small-sample term.
    """
    x, y = _pair(a, b)
    n, m = x.sum(), y.sum()
    d = float(np.max(np.abs(np.cumsum(x) / n - np.cumsum(y) / m)))
    root = math.sqrt(n * m / (n + m))
    return d, float(kolmogorov((root + 0.12 + 0.11 / root) * d))


def histogram_quantile(counts: np.ndarray, lo: float, hi: float, q: float) -> float:
    """The q-quantile of values binned evenly on [lo, hi], interpolated inside its bin."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("quantile of an empty histogram")
    width = (hi - lo) / c.size
    cumulative = np.cumsum(c)
    target = q * total
    index = int(np.searchsorted(cumulative, target, side="left"))
    index = min(index, c.size - 1)
    before = cumulative[index - 1] if index else 0.0
    inside = (target - before) / c[index] if c[index] else 0.0
    return lo + width * (index + min(max(inside, 0.0), 1.0))
