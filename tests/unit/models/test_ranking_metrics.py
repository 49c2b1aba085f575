"""Average precision, confusion pairs and calibration of `models evaluate`, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soundscape.models.metrics import (
    average_precision,
    average_precisions,
    confusion_pairs,
    macro_ap,
    precision_recall_curve,
    reliability,
)

LABELS = ("a", "b", "c")


def brute_force_ap(scores: np.ndarray, truth: np.ndarray) -> float:
    """sum over each distinct threshold t, highest first, of (R(t) - R(previous t)) * P(t),
    counted from scratch at every threshold."""
    total, previous = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        tp = float((chosen & truth).sum())
        precision, recall = tp / chosen.sum(), tp / truth.sum()
        total += (recall - previous) * precision
        previous = recall
    return total


def test_average_precision_by_hand() -> None:
    # ranked: + (P 1, R 1/2), - , + (P 2/3, R 1): AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx(5 / 6)
    # a tie between a positive and a negative is one threshold: P 1/2 at R 1
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    # perfect ranking, and no positives at all
    assert average_precision(np.array([0.2, 0.9, 0.1]), np.array([0, 1, 0])) == 1.0
    assert math.isnan(average_precision(np.array([0.2, 0.9]), np.array([0, 0])))
    precision, recall = precision_recall_curve(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]))
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 1])


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_a_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    truth = rng.random(n) < 0.3
    truth[0] = True
    scores = np.round(rng.random(n) + 0.3 * truth, 1 if seed % 2 else 6)  # ties on odd seeds
    assert average_precision(scores, truth) == pytest.approx(brute_force_ap(scores, truth))
    import sklearn.metrics as sklearn  # installed with librosa (a serve dependency)
    assert average_precision(scores, truth) == pytest.approx(
        sklearn.average_precision_score(truth, scores))


def test_macro_ap_skips_labels_no_item_holds() -> None:
    probs = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.6, 0.4, 0.3]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    ap = average_precisions(probs, targets)
    assert ap[0] == 1.0 and ap[1] == 0.5 and math.isnan(ap[2])
    assert macro_ap(probs, targets) == 0.75
    assert math.isnan(macro_ap(probs, np.zeros_like(targets)))


def test_confusion_pairs_count_wrong_labels_against_the_true_ones() -> None:
    targets = np.array([
        [1, 0, 0],  # a held, b predicted (a found too)  -> (a, b), a not missed
        [1, 0, 0],  # a held, b predicted, a missed      -> (a, b) swapped
        [1, 1, 0],  # a, b held, c predicted             -> (a, c) and (b, c), b missed
        [0, 0, 1],  # c held and found                   -> nothing
    ], dtype=bool)
    predicted = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=bool)
    pairs = confusion_pairs(predicted, targets, LABELS)
    assert [(p.true, p.predicted, p.count, p.true_missed) for p in pairs] == [
        ("a", "b", 2, 1), ("b", "c", 1, 1), ("a", "c", 1, 0)]
    assert len(confusion_pairs(predicted, targets, LABELS, top=1)) == 1
    assert confusion_pairs(targets, targets, LABELS) == []


def test_reliability_bins_and_expected_calibration_error() -> None:
    probs = np.array([[0.05, 0.15], [0.05, 0.95], [1.0, 0.91]])
    targets = np.array([[0, 1], [0, 1], [1, 0]])
    bins, ece = reliability(probs, targets)
    assert len(bins) == 10 and [b.count for b in bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert (bins[0].mean_predicted, bins[0].observed) == (pytest.approx(0.05), 0.0)
    assert (bins[1].mean_predicted, bins[1].observed) == (pytest.approx(0.15), 1.0)
    assert bins[2].mean_predicted is None and bins[2].observed is None
    top = bins[9]  # 0.95, 1.0 (the last bin includes 1) and 0.91: two of three present
    assert (top.low, top.high) == (0.9, 1.0)
    assert top.mean_predicted == pytest.approx((0.95 + 1.0 + 0.91) / 3)
    assert top.observed == pytest.approx(2 / 3)
    expected = (2 * 0.05 + 1 * 0.85 + 3 * abs(2 / 3 - 2.86 / 3)) / 6
    assert ece == pytest.approx(expected)
    _, perfect = reliability(np.array([[0.0, 1.0]]), np.array([[0, 1]]))
    assert perfect == 0.0
