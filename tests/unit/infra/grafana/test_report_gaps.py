"""Report lines break across a station's outage instead of sloping over it."""

import math
from datetime import UTC, datetime, timedelta

from soundscape.infra.grafana.report import break_gaps


def _times(minutes: list[int]) -> list[datetime]:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    return [start + timedelta(minutes=m) for m in minutes]


def test_a_missing_stretch_becomes_one_nan() -> None:
    xs = _times([0, 5, 10, 15, 60, 65])
    out_x, out_y = break_gaps(xs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert len(out_x) == 7 and math.isnan(out_y[4])
    assert out_x[3] < out_x[4] < out_x[5]
    assert [y for y in out_y if y == y] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_regular_series_are_unchanged() -> None:
    xs = _times([0, 5, 10, 15])
    assert break_gaps(xs, [1.0, 2.0, 3.0, 4.0]) == (xs, [1.0, 2.0, 3.0, 4.0])
    assert break_gaps(xs[:2], [1.0, 2.0]) == (xs[:2], [1.0, 2.0])
