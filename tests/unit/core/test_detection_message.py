"""How a chunk's probabilities become the labels a result names, for workers and
stations alike."""

from __future__ import annotations

import numpy as np

from soundscape.detection_message import above_threshold, edge_worker_id, top_k

LABELS = ["a", "b", "c", "d"]


def test_top_k_ranks_stably_and_keeps_at_least_one() -> None:
    p = np.array([0.2, 0.9, 0.2, 0.5], dtype=np.float32)
    assert [s.label for s in top_k(p, LABELS, 3)] == ["b", "d", "a"]  # ties keep label order
    assert [s.label for s in top_k(p, LABELS, 0)] == ["b"]
    assert len(top_k(p, LABELS, 99)) == 4


def test_above_threshold_uses_each_labels_threshold() -> None:
    p = np.array([0.5, 0.9, 0.3, 0.6], dtype=np.float32)
    thresholds = np.array([0.5, 0.95, 0.1, 0.5], dtype=np.float32)
    assert [s.label for s in above_threshold(p, LABELS, thresholds)] == ["d", "a", "c"]


def test_edge_results_name_their_station() -> None:
    assert edge_worker_id("marsh-03") == "edge:marsh-03"
