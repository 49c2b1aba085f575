"""Event-time windows: aligned, tumbling and hopping, made of whole panes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soundscape.processors.drift.windows import WindowSpec
from soundscape.settings import DriftSettings

S = 1_000_000_000


def test_tumbling_windows_partition_time() -> None:
    spec = WindowSpec.from_settings(DriftSettings(window_s=3600, hop_s=3600, grace_s=60))
    assert spec.kind == "tumbling"
    t = (10 * 3600 + 125) * S
    assert spec.windows_of(t) == [10 * 3600 * S]
    assert list(spec.panes_of(10 * 3600 * S)) == [10 * 3600 * S]
    assert spec.closes_at(10 * 3600 * S) == (11 * 3600 + 60) * S


def test_hopping_windows_overlap_by_whole_panes() -> None:
    spec = WindowSpec(600 * S, 300 * S)
    assert spec.kind == "hopping"
    assert spec.windows_of(1000 * S) == [600 * S, 900 * S]
    assert list(spec.panes_of(600 * S)) == [600 * S, 900 * S]


@given(st.integers(0, 2**62), st.sampled_from([(600, 300), (3600, 900), (60, 60)]))
def test_every_window_of_a_time_contains_it(t: int, sizes: tuple[int, int]) -> None:
    spec = WindowSpec(sizes[0] * S, sizes[1] * S)
    starts = spec.windows_of(t)
    assert len(starts) == sizes[0] // sizes[1]
    assert all(s <= t < s + spec.size_ns and s % spec.hop_ns == 0 for s in starts)
    assert spec.first_window(t) == starts[0]


def test_a_window_that_is_not_whole_hops_is_refused() -> None:
    with pytest.raises(ValueError):
        WindowSpec(700 * S, 300 * S)
    with pytest.raises(ValueError):
        DriftSettings(window_s=700, hop_s=300)
    with pytest.raises(ValueError):
        DriftSettings(reference="baseline")  # no baseline period given
