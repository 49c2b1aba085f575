"""The multi-label metrics of `models evaluate` and train-demo's threshold tuning."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from soundscape.errors import UserError
from soundscape.models.evaluate import read_manifest_csv
from soundscape.models.metrics import (
    class_scores,
    confusion_matrix,
    decision_agreement,
    macro_f1,
    tune_thresholds,
)

LABELS = ("a", "b", "c")


def test_per_label_counts_by_hand() -> None:
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.1, 0.2], [0.4, 0.8, 0.1], [0.7, 0.6, 0.3], [0.1, 0.2, 0.9]])
    a, b, c = class_scores(probs, targets, 0.5, LABELS)
    # a: predicted on items 0 and 2, true on 0 and 1 -> tp 1, fp 1, fn 1
    assert (a.precision, a.recall, a.f1, a.support, a.predicted) == (0.5, 0.5, 0.5, 2, 2)
    # b: predicted on 1 and 2, true on 1 and 2 -> perfect
    assert (b.precision, b.recall, b.f1) == (1.0, 1.0, 1.0)
    # c: never present, predicted once: precision 0, no recall, F1 0
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, None, 0.0, 0)
    assert macro_f1(probs, targets, 0.5) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_labels_neither_present_nor_predicted_do_not_count() -> None:
    targets = np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.1, 0.1], [0.2, 0.1, 0.1]])
    scores = class_scores(probs, targets, 0.5, LABELS)
    assert [s.f1 for s in scores] == [1.0, None, None]
    assert macro_f1(probs, targets, 0.5) == 1.0
    assert math.isnan(macro_f1(probs[1:], targets[1:], 0.5))


def test_per_label_thresholds_apply_per_column() -> None:
    targets = np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32)
    probs = np.array([[0.3, 0.3, 0.1], [0.1, 0.1, 0.3]])
    assert macro_f1(probs, targets, 0.5) == 0.0
    assert macro_f1(probs, targets, np.array([0.2, 0.5, 0.2])) == pytest.approx(2 / 3)


def test_tuned_thresholds_separate_and_sit_mid_range() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 2)) < 0.3).astype(np.float32)
    # label 0: positives score 0.8, negatives 0.2 -> every threshold in (0.2, 0.8] is perfect
    # label 1: positives score 0.35, negatives 0.05 -> the threshold must go below 0.35
    probs = np.where(targets > 0, [0.8, 0.35], [0.2, 0.05])
    thresholds = tune_thresholds(probs, targets)
    assert 0.4 <= thresholds[0] <= 0.6
    assert 0.05 < thresholds[1] <= 0.35
    assert macro_f1(probs, targets, thresholds) == 1.0
    assert macro_f1(probs, targets, 0.5) < 1.0


def test_confusion_matrix_attributes_misses_to_wrong_labels() -> None:
    targets = np.array([
        [1, 0, 0],  # a found                    -> (a, a)
        [0, 1, 0],  # b missed, c claimed         -> (b, c)
        [0, 0, 1],  # c missed, nothing claimed   -> (c, none)
        [1, 0, 0],  # a found, b claimed too      -> (a, a) and (none, b)
        [0, 0, 0],  # empty and left empty        -> (none, none)
    ], dtype=bool)
    predicted = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = 2
    expected[1, 2] = 1
    expected[2, 3] = 1
    expected[3, 1] = 1
    expected[3, 3] = 1
    np.testing.assert_array_equal(confusion_matrix(predicted, targets), expected)


def test_decision_agreement() -> None:
    a = np.array([[0.9, 0.1], [0.6, 0.4]])
    b = np.array([[0.8, 0.2], [0.4, 0.4]])
    assert decision_agreement(a, b, 0.5) == 0.75
    assert decision_agreement(a, a, 0.5) == 1.0


def test_recordings_csv(tmp_path: Path) -> None:
    csv = tmp_path / "test.csv"
    csv.write_text("file,label\nsite/one.wav,a\nsite/one.wav,b\n/abs/two.flac,c;a\n")
    files = read_manifest_csv(csv, LABELS)
    assert files == {tmp_path / "site/one.wav": {"a", "b"}, Path("/abs/two.flac"): {"a", "c"}}
    csv.write_text("file,label\none.wav,zebra\n")
    with pytest.raises(UserError, match="zebra"):
        read_manifest_csv(csv, LABELS)
    csv.write_text("path,species\none.wav,a\n")
    with pytest.raises(UserError, match="columns file and label"):
        read_manifest_csv(csv, LABELS)
