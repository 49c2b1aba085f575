"""`models compare`'s figures from two versions' results and the reviews' verdicts."""

from __future__ import annotations

import uuid

from soundscape.sinks.model_compare import Scored, summarise

A, B, C, D = (uuid.UUID(int=i) for i in range(1, 5))


def scored(top: str, *detected: str) -> Scored:
    return Scored(top, frozenset(detected))


def test_agreement_shifts_and_precision_on_reviewed_chunks() -> None:
    live = {A: scored("wren", "wren"), B: scored("robin", "robin", "wren"),
            C: scored("owl"), D: scored("wren", "wren")}
    candidate = {A: scored("wren", "wren"), B: scored("robin", "robin"),
                 C: scored("wren", "wren")}  # D not scored by the candidate: not counted
    truth = {A: ({"wren"}, set()),            # confirmed wren
             B: ({"robin"}, {"wren"}),        # wren rejected (or relabelled to robin)
             C: (set(), {"wren"})}            # wren rejected
    report = summarise("live-1", "cand-1", live, candidate, truth)
    assert report["chunks"] == {"live": 4, "candidate": 3, "both": 3}
    assert report["agreement"] == {"top_label": round(2 / 3, 4), "detected_set": round(1 / 3, 4)}
    shifts = {row["label"]: (row["live"], row["candidate"], row["shift"])
              for row in report["species_shifts"]}
    assert shifts == {"wren": (2, 2, 0), "robin": (1, 1, 0)}
    assert report["species_changed"] == 0
    assert report["reviewed"]["chunks"] == 3
    # live: wren on A right, robin on B right, wren on B wrong -> 2 of 3
    assert report["reviewed"]["live"] == {"right": 2, "wrong": 1, "precision": round(2 / 3, 4)}
    # candidate: wren on A right, robin on B right, wren on C wrong -> 2 of 3
    assert report["reviewed"]["candidate"] == {"right": 2, "wrong": 1,
                                               "precision": round(2 / 3, 4)}


def test_nothing_in_common_gives_no_ratios() -> None:
    report = summarise("a", "b", {A: scored("x", "x")}, {B: scored("y", "y")}, {})
    assert report["chunks"]["both"] == 0
    assert report["agreement"] == {"top_label": None, "detected_set": None}
    assert report["reviewed"]["live"]["precision"] is None


def test_count_shifts_are_listed_largest_first() -> None:
    live = {A: scored("x", "x"), B: scored("x", "x"), C: scored("y", "y")}
    candidate = {A: scored("y", "y"), B: scored("y", "y"), C: scored("y", "y", "z")}
    report = summarise("a", "b", live, candidate, {})
    assert [(r["label"], r["shift"]) for r in report["species_shifts"]] == \
        [("x", -2), ("y", 2), ("z", 1)]
    assert report["species_changed"] == 3
