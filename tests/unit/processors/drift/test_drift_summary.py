"""Summaries add up, survive JSON (the faust tables), and panes count a chunk once."""

from __future__ import annotations

from drift_observations import observations

from soundscape.processors.drift.summary import CHUNK_NS, Pane, Summary

T0 = 1_780_000_000 * 10**9 - (1_780_000_000 * 10**9) % (600 * 10**9)


def test_merged_parts_equal_the_whole_and_json_round_trips() -> None:
    obs = list(observations("a", T0, 120, seed=1))
    whole = Summary.of(obs)
    parts = Summary.merged([Summary.of(obs[:50]), Summary.of(obs[50:])])
    assert parts == whole
    assert Summary.from_json(whole.to_json()) == whole
    assert whole.chunks == 120 and sum(whole.labels.values()) == 120
    assert -60 < whole.median("noise_floor_dbfs") < -45
    assert whole.mean("silence_ratio") == sum(o.silence_ratio for o in obs) / 120


def test_pane_counts_a_redelivered_chunk_once_and_round_trips() -> None:
    pane = Pane(T0)
    first, second = list(observations("a", T0, 2, seed=2))
    assert pane.add(first) and pane.add(second)
    assert not pane.add(first)  # the same chunk_start again
    assert pane.summary.chunks == 2 and pane.slots == 0b11
    assert Pane.from_json(pane.to_json()) == pane


def test_out_of_range_values_land_in_the_edge_bins() -> None:
    obs = next(observations("a", T0, 1, seed=3, noise_floor=-500.0, centroid=90_000.0))
    summary = Summary.of([obs])
    assert list(summary.histograms["noise_floor_dbfs"]) == [0]
    assert list(summary.histograms["spectral_centroid_hz"]) == [239]
    assert summary.chunks == 1 and T0 + CHUNK_NS > obs.chunk_start
