"""Windowed results: how windows cover a chunk, BirdNET's week, and how pooled scores,
best windows and the range filter become a result's labels."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import pytest

from soundscape.processors.results import LabelInfo, embedding_text, windowed_scores
from soundscape.processors.scoring import WindowDetail
from soundscape.windowed import season_week, split_label, window_spans


@pytest.mark.parametrize(("total", "window", "hop", "spans"), [
    (480_000, 144_000, 144_000, [(0, 144_000), (144_000, 288_000), (288_000, 432_000),
                                 (336_000, 480_000)]),
    (432_000, 144_000, 144_000, [(0, 144_000), (144_000, 288_000), (288_000, 432_000)]),
    (100_000, 144_000, 144_000, [(0, 144_000)]),
])
def test_windows_cover_every_sample_and_stay_inside_the_chunk(total: int, window: int, hop: int,
                                                             spans: list[tuple[int, int]]) -> None:
    assert window_spans(total, window, hop) == spans


@pytest.mark.parametrize("hop", [48_000, 72_000, 96_000, 144_000])
def test_any_hop_leaves_no_gap(hop: int) -> None:
    spans = window_spans(480_000, 144_000, hop)
    covered = np.zeros(480_000, dtype=bool)
    for start, end in spans:
        assert 0 <= start < end <= 480_000
        covered[start:end] = True
    assert covered.all()


@pytest.mark.parametrize(("day", "week"), [((2025, 1, 1), 1), ((2025, 1, 8), 2), ((2025, 1, 31), 4),
                                           ((2025, 5, 20), 19), ((2025, 12, 31), 48)])
def test_birdnet_weeks_are_four_a_month(day: tuple[int, int, int], week: int) -> None:
    ns = int(datetime(*day, 12, tzinfo=timezone.utc).timestamp()) * 10**9
    assert season_week(ns) == week


def test_labels_split_into_scientific_and_common_names() -> None:
    assert split_label("Acanthis cabaret_Lesser Redpoll", "scientific_common") == (
        "Acanthis cabaret", "Lesser Redpoll")
    assert split_label("high-buzz", "plain") == ("high-buzz", None)


def _detail() -> WindowDetail:
    windows = np.array([[0.9, 0.1, 0.2], [0.3, 0.6, 0.1]], dtype=np.float32)
    return WindowDetail([(0.0, 3.0), (3.0, 6.0)], windows, windows.argmax(axis=0),
                        np.ones(4, np.float32))


LABELS = ["Aus bus", "Cus dus", "Eus fus"]
COMMON: list[str | None] = ["A bird", "C bird", "E bird"]


def test_each_label_reports_the_window_its_score_comes_from() -> None:
    detail = _detail()
    pooled = detail.window_probabilities.max(axis=0)
    top, found, windows = windowed_scores(pooled, detail, LABELS, np.full(3, 0.5, np.float32), 3,
                                          LabelInfo(COMMON))
    assert [(s.label, s.window_start_s) for s in found] == [("Aus bus", 0.0), ("Cus dus", 3.0)]
    assert top[0].common_name == "A bird" and top[0].in_range is None
    assert [w.top_k[0].label for w in windows] == ["Aus bus", "Cus dus"]


def test_mark_keeps_species_out_of_range_and_says_so() -> None:
    detail = _detail()
    pooled = detail.window_probabilities.max(axis=0)
    in_range = np.array([False, True, True])
    _, found, _ = windowed_scores(pooled, detail, LABELS, np.full(3, 0.5, np.float32), 3,
                                  LabelInfo(COMMON, in_range, "mark"))
    assert [(s.label, s.in_range) for s in found] == [("Aus bus", False), ("Cus dus", True)]


def test_drop_removes_species_out_of_range_everywhere() -> None:
    detail = _detail()
    pooled = detail.window_probabilities.max(axis=0)
    in_range = np.array([False, True, True])
    top, found, windows = windowed_scores(pooled, detail, LABELS, np.full(3, 0.5, np.float32), 3,
                                          LabelInfo(COMMON, in_range, "drop"))
    assert "Aus bus" not in {s.label for s in [*top, *found, *windows[0].top_k]}
    assert [s.label for s in found] == ["Cus dus"]


def test_embedding_travels_as_float16_base64() -> None:
    vector = np.linspace(-1, 1, 1024, dtype=np.float32)
    raw = base64.b64decode(embedding_text(vector))
    assert len(raw) == 2048
    assert np.allclose(np.frombuffer(raw, "<f2"), vector, atol=1e-3)
