"""Which chunks the clip keeper keeps, and where their files go."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from soundscape.clip_store import resolve
from soundscape.messages import LabelScore
from soundscape.sinks.clip_files import (
    keep_reason,
    relative_path,
    remove_clip,
    sampled,
    write_clip,
)
from soundscape.sinks.sample_results import detection


def _with(probabilities: list[float]):
    base = detection("roof-1", 1_780_000_000 * 10**9, detections=0)
    found = [LabelScore(label=f"species {i}", probability=p) for i, p in enumerate(probabilities)]
    return base.model_copy(update={"detections": found})


def test_a_confident_detection_is_kept_an_unsure_one_is_not() -> None:
    assert keep_reason(_with([0.2, 0.7]), 0.5, 0.0) == "detection"
    assert keep_reason(_with([0.5]), 0.5, 0.0) == "detection"
    assert keep_reason(_with([0.49]), 0.5, 1.0) is None  # detected: never a negative


def test_negatives_are_a_share_of_chunks_without_detections_chosen_by_id() -> None:
    empty = _with([])
    assert keep_reason(empty, 0.5, 0.0) is None
    assert keep_reason(empty, 0.5, 1.0) == "negative"
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, str(i)) for i in range(20_000)]
    share = sum(sampled(i, 0.05) for i in ids) / len(ids)
    assert 0.04 < share < 0.06
    assert [sampled(i, 0.05) for i in ids[:100]] == [sampled(i, 0.05) for i in ids[:100]]


def test_paths_are_per_station_and_day_and_never_leave_the_folder(tmp_path: Path) -> None:
    chunk = uuid.uuid4()
    relative = relative_path("roof-1", 1_780_000_000 * 10**9, chunk, "flac")
    assert relative == f"roof-1/2026-05-28/{chunk}.flac"
    assert write_clip(tmp_path, relative, b"fLaC data") == 9
    assert (tmp_path / relative).read_bytes() == b"fLaC data"
    assert not list(tmp_path.rglob("*.tmp"))
    assert remove_clip(tmp_path, relative) and not remove_clip(tmp_path, relative)
    for escape in ("../outside.flac", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="leaves"):
            resolve(tmp_path, escape)
