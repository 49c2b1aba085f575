"""Per-item input checks of FusionModel (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.fusion import ScoreResult, _finite_rows, _validate

SHAPES = {"mel": (2, 3), "waveform": (4,)}


def _batch(n: int) -> dict[str, np.ndarray]:
    return {"mel": np.zeros((n, 2, 3), np.float32), "waveform": np.zeros((n, 4), np.float32)}


def test_clean_batches_pass() -> None:
    _, errors, count = _validate(_batch(3), SHAPES)
    assert (errors, count) == ({}, 3)


def test_each_bad_item_is_named() -> None:
    inputs = {"mel": list(_batch(4)["mel"]), "waveform": _batch(4)["waveform"]}
    inputs["mel"][0] = np.zeros((2, 2), np.float32)
    inputs["mel"][1] = np.zeros((2, 3), np.float64)
    inputs["mel"][2] = [[0.0] * 3] * 2
    inputs["waveform"][3, 1] = np.nan
    _, errors, _ = _validate(inputs, SHAPES)
    assert errors == {
        0: "mel has shape [2, 2], expected [2, 3]",
        1: "mel has dtype float64, expected float32",
        2: "mel is a list, not a numpy array",
        3: "waveform holds NaN or Inf",
    }


def test_a_wrong_batch_array_fails_every_item_and_problems_accumulate() -> None:
    inputs = _batch(2)
    inputs["waveform"] = np.zeros((2, 5), np.float32)
    inputs["mel"][1, 0, 0] = -np.inf
    _, errors, _ = _validate(inputs, SHAPES)
    assert errors[0] == "waveform has shape [5], expected [4]"
    assert errors[1] == "mel holds NaN or Inf; waveform has shape [5], expected [4]"


def test_inputs_must_agree_on_the_batch_size() -> None:
    inputs = _batch(2)
    inputs["mel"] = inputs["mel"][:1]
    with pytest.raises(ValueError, match="disagree on the batch size"):
        _validate(inputs, SHAPES)


def test_finite_rows_sees_every_kind_of_non_finite() -> None:
    batch = np.full((4, 1000), np.finfo(np.float32).max, np.float32)  # sums past float32
    batch[1, 3], batch[2, 999], batch[3, 0] = np.nan, np.inf, -np.inf
    assert _finite_rows(batch).tolist() == [True, False, False, False]


def test_score_result_mask() -> None:
    result = ScoreResult(np.zeros((3, 2), np.float32), errors={1: "bad"})
    assert result.ok.tolist() == [True, False, True]
