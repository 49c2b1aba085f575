"""Multi-label detection metrics (numpy only): what `models evaluate` and the threshold
tuning of `models train-demo` report.

A chunk holds any number of species, so every label is its own yes/no decision at its
own threshold: precision, recall and F1 are counted per label, and macro-F1 (their plain
mean) weighs a rare species as much as a common one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Candidate thresholds for tuning: 0.05 .. 0.95.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
#: The confusion matrix's extra row/column: no label at all.
NONE = "(none)"


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float | None  # None: never predicted
    recall: float | None  # None: never present
    f1: float | None  # None: neither present nor predicted
    support: int  # items that hold the label
    predicted: int  # items the model gave it


def _as_bool(targets: np.ndarray) -> np.ndarray:
    return np.asarray(targets) > 0.5


def decisions(probabilities: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """[n, C] bool: probability >= the label's threshold."""
    return np.asarray(probabilities) >= np.asarray(thresholds, dtype=np.float64)


def counts(predicted: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, false negatives) per label."""
    truth = _as_bool(targets)
    tp = (predicted & truth).sum(axis=0)
    fp = (predicted & ~truth).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    return tp, fp, fn


def f1_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, F1) per label. A ratio with nothing to count is NaN: a label
    never predicted has no precision, one never present no recall, and one neither present
    nor predicted no F1 (it says nothing about the model either way)."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return precision, recall, f1


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def class_scores(probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float,
                 labels: Sequence[str]) -> list[ClassScores]:
    predicted = decisions(probabilities, thresholds)
    tp, fp, fn = counts(predicted, targets)
    precision, recall, f1 = f1_scores(tp, fp, fn)
    return [ClassScores(label, _number(precision[i]), _number(recall[i]), _number(f1[i]),
                        int(tp[i] + fn[i]), int(tp[i] + fp[i])) for i, label in enumerate(labels)]


def macro_f1(probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float) -> float:
    """The mean F1 over the labels present or predicted at least once (NaN if none is)."""
    _, _, f1 = f1_scores(*counts(decisions(probabilities, thresholds), targets))
    return float(np.nanmean(f1)) if not np.isnan(f1).all() else float("nan")


def tune_thresholds(probabilities: np.ndarray, targets: np.ndarray,
                    grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per label, the grid threshold with the best F1 on (`probabilities`, `targets`).

    Ties (common on small validation sets, where a whole range separates the classes
    perfectly) go to the middle of the best range, the choice with the most margin.
    """
    truth = _as_bool(targets)
    best = np.empty(truth.shape[1])
    for label in range(truth.shape[1]):
        column = probabilities[:, label][:, None] >= grid[None, :]  # [n, thresholds]
        tp = (column & truth[:, label, None]).sum(axis=0)
        fp = (column & ~truth[:, label, None]).sum(axis=0)
        fn = (~column & truth[:, label, None]).sum(axis=0)
        _, _, f1 = f1_scores(tp, fp, fn)
        f1 = np.nan_to_num(f1, nan=0.0)  # a label absent from the set: any threshold does
        top = np.flatnonzero(np.isclose(f1, f1.max()))
        best[label] = grid[top[len(top) // 2]]
    return best


def confusion_matrix(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[C + 1, C + 1] counts: rows the true labels, columns the predicted ones, the last
    row and column standing for "no label".

    Multi-label confusion (after Heydarian et al., 2022): a label both true and predicted
    counts on the diagonal; a missed label counts against each label wrongly predicted for
    the same chunk, or against "none" when there is no such label; a wrongly predicted
    label with nothing missed beside it counts in the "none" row; a chunk with no label,
    rightly left empty, counts at ("none", "none").
    """
    truth = _as_bool(targets)
    classes = truth.shape[1]
    none = classes
    matrix = np.zeros((classes + 1, classes + 1), dtype=np.int64)
    for true_row, pred_row in zip(truth, predicted, strict=True):
        hits = np.flatnonzero(true_row & pred_row)
        missed = np.flatnonzero(true_row & ~pred_row)
        extra = np.flatnonzero(pred_row & ~true_row)
        matrix[hits, hits] += 1
        for label in missed:
            if len(extra):
                matrix[label, extra] += 1
            else:
                matrix[label, none] += 1
        if len(extra) and not len(missed):
            matrix[none, extra] += 1
        if not true_row.any() and not pred_row.any():
            matrix[none, none] += 1
    return matrix


def decision_agreement(reference: np.ndarray, other: np.ndarray, thresholds: np.ndarray | float) -> float:
    """Share of (item, label) yes/no decisions two models share at the same thresholds."""
    return float(np.mean(decisions(reference, thresholds) == decisions(other, thresholds)))


# ---- ranking, confusion pairs and calibration: what `models evaluate` adds to the F1 ------
#: Reliability bins: equal-width intervals of predicted probability over [0, 1].
CALIBRATION_BINS = 10


def precision_recall_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct score taken as a threshold, highest first.

    Ties share one point (every item scoring the same is decided together), as in
    sklearn's precision_recall_curve; empty arrays when nothing holds the label.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = _as_bool(truth)
    if not positive.any():
        return np.empty(0), np.empty(0)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last item of each tie
    tp = np.cumsum(hits)[last].astype(np.float64)
    return tp / (last + 1), tp / tp[-1]


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """The area under the precision-recall curve as sklearn's average_precision_score
    defines it: sum over thresholds of (R_n - R_n-1) * P_n, no interpolation. NaN when no
    item holds the label (there is nothing to rank)."""
    precision, recall = precision_recall_curve(scores, truth)
    if not len(recall):
        return float("nan")
    # Summed as new positives * precision over the positives, not as recall steps: the
    # same value, but a perfect ranking comes out exactly 1 rather than 1 - 1e-16.
    positives = int(_as_bool(truth).sum())
    found = np.diff(np.rint(recall * positives), prepend=0.0)
    return float(np.sum(found * precision) / positives)


def average_precisions(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[C] average precision per label (NaN for a label no item holds)."""
    probabilities, truth = np.asarray(probabilities), _as_bool(targets)
    return np.array([average_precision(probabilities[:, c], truth[:, c])
                     for c in range(truth.shape[1])])


def macro_ap(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean average precision over the labels some item holds (NaN if none does)."""
    ap = average_precisions(probabilities, targets)
    return float(np.nanmean(ap)) if not np.isnan(ap).all() else float("nan")


@dataclass(frozen=True)
class ConfusionPair:
    true: str  # a label the chunk holds
    predicted: str  # a label it does not hold that the model gave it
    count: int  # chunks holding `true`, not `predicted`, given `predicted`
    true_missed: int  # of those, chunks where `true` was missed too (a real swap)


def confusion_pairs(predicted: np.ndarray, targets: np.ndarray, labels: Sequence[str],
                    top: int = 20) -> list[ConfusionPair]:
    """The `top` most frequent (true A, predicted B) pairs: the chunk holds A and not B,
    and the model predicts B. Multi-label, so a chunk counts once for every such pair;
    ordered by count, then by how often A was missed too, then by the names."""
    truth = _as_bool(targets).astype(np.int64)
    predicted = np.asarray(predicted, dtype=bool)
    extra = (predicted & (truth == 0)).astype(np.int64)  # wrongly given labels
    missed = ((truth == 1) & ~predicted).astype(np.int64)
    count = truth.T @ extra  # [A, B]; the diagonal is 0 (B is never held)
    swapped = missed.T @ extra
    pairs = [ConfusionPair(labels[a], labels[b], int(count[a, b]), int(swapped[a, b]))
             for a, b in zip(*np.nonzero(count), strict=True)]
    pairs.sort(key=lambda p: (-p.count, -p.true_missed, p.true, p.predicted))
    return pairs[:top]


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int  # (chunk, label) cells whose probability falls in [low, high)
    mean_predicted: float | None  # None: an empty bin
    observed: float | None  # share of those cells where the label is present


def reliability(probabilities: np.ndarray, targets: np.ndarray,
                bins: int = CALIBRATION_BINS) -> tuple[list[ReliabilityBin], float]:
    """Reliability bins over every (chunk, label) cell and the expected calibration error:
    the count-weighted mean |observed - mean predicted| over the bins (NaN with no cells).
    A calibrated model's 0.3s come true 30 % of the time; the last bin includes 1.0."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = _as_bool(targets).ravel().astype(np.float64)
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    total_p = np.bincount(index, weights=p, minlength=bins)
    total_y = np.bincount(index, weights=y, minlength=bins)
    result, gap = [], 0.0
    for b in range(bins):
        if count[b]:
            mean, observed = total_p[b] / count[b], total_y[b] / count[b]
            gap += count[b] * abs(observed - mean)
            result.append(ReliabilityBin(b / bins, (b + 1) / bins, int(count[b]), float(mean),
                                         float(observed)))
        else:
            result.append(ReliabilityBin(b / bins, (b + 1) / bins, 0, None, None))
    return result, float(gap / len(p)) if len(p) else float("nan")
