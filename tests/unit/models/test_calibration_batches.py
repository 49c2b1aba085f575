"""Calibration batches for onnxruntime's histogram calibrators are all one size."""

import numpy as np
import pytest

from soundscape.models.quantize import _Reader, even_batch

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("count", "largest", "expected"),
                         [(64, 8, 8), (30, 8, 6), (13, 8, 1), (7, 8, 7), (1, 8, 1), (0, 8, 1)])
def test_even_batch(count: int, largest: int, expected: int) -> None:
    assert even_batch(count, largest) == expected


def test_reader_yields_equal_batches_covering_every_item() -> None:
    array = np.arange(30, dtype=np.float32).reshape(30, 1)
    reader = _Reader("x", array)
    parts = []
    while (feed := reader.get_next()) is not None:
        parts.append(feed["x"])
    assert {len(p) for p in parts} == {6}
    assert np.array_equal(np.concatenate(parts), array)
    reader.rewind()
    assert reader.get_next() is not None
