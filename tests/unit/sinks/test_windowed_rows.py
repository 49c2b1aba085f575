"""Windowed results (BirdNET) as rows, station-site input checks, and the sites cache:
the pure parts, no database."""

from __future__ import annotations

import base64
import json

import numpy as np
import psycopg
import pytest

from soundscape.messages import Detection, LabelScore, WindowScores
from soundscape.sinks import staging
from soundscape.sinks.sample_results import detection
from soundscape.sinks.station_sites import DatabaseStationSites, site_from_row, sites_from_rows
from soundscape.sinks.stations import (
    SiteChange,
    SiteInputError,
    check_station_id,
    parse_species,
    upsert_sql,
)
from soundscape.sinks.stations_cli import location_text
from soundscape.station_sites import StationSite

EMBEDDING = np.array([0.5, -1.25, 3.0, 0.0], dtype="<f2")


def windowed(chunk_start: int = 10**18, embedding: bool = True) -> Detection:
    """A fusion sample result turned into what a windowed bundle sends."""
    base = detection("st-1", chunk_start, detections=2)
    found = [LabelScore(label="Turdus merula", probability=0.9, common_name="Eurasian Blackbird",
                        window_start_s=3.0, window_end_s=6.0, in_range=True),
             LabelScore(label="Sarothrura insularis", probability=0.7,
                        common_name="Madagascar Flufftail", window_start_s=0.0,
                        window_end_s=3.0, in_range=False)]
    windows = [WindowScores(start_s=0.0, end_s=3.0, top_k=[found[1]]),
               WindowScores(start_s=3.0, end_s=6.0, top_k=[found[0]])]
    return Detection.model_validate(base.model_dump() | {
        "top_k": [s.model_dump() for s in found], "detections": [s.model_dump() for s in found],
        "windows": [w.model_dump() for w in windows],
        "embedding_f16": base64.b64encode(EMBEDDING.tobytes()).decode() if embedding else None,
    })


def _chunk(d: Detection) -> dict[str, object]:
    return dict(zip((n for n, _ in staging.CHUNKS.columns), staging.chunk_row(d)))


# ---- rows -----------------------------------------------------------------------------------
def test_windowed_detection_rows_carry_name_window_and_range() -> None:
    rows = list(staging.detection_rows(windowed()))
    names = [n for n, _ in staging.DETECTIONS.columns]
    first = dict(zip(names, rows[0]))
    assert len(rows[0]) == len(names)
    assert (first["common_name"], first["window_start_s"], first["window_end_s"],
            first["in_range"]) == ("Eurasian Blackbird", 3.0, 6.0, True)
    assert dict(zip(names, rows[1]))["in_range"] is False


def test_windowed_chunk_row_has_window_json_and_embedding_bytes() -> None:
    row = _chunk(windowed())
    windows = json.loads(row["windows"])  # type: ignore[arg-type]
    assert [w["start_s"] for w in windows] == [0.0, 3.0]
    assert windows[1]["top_k"][0]["common_name"] == "Eurasian Blackbird"
    assert row["embedding"] == EMBEDDING.tobytes() and len(row["embedding"]) == 2 * EMBEDDING.size
    stored = np.frombuffer(row["embedding"], "<f2")  # type: ignore[call-overload]
    assert np.array_equal(stored, EMBEDDING)
    assert _chunk(windowed(embedding=False))["embedding"] is None


def test_fusion_rows_are_as_before_windowed_fields() -> None:
    result = detection("st-1", 10**18, detections=2)
    row = _chunk(result)
    assert row["windows"] is None and row["embedding"] is None
    top_k = json.loads(row["top_k"])  # type: ignore[arg-type]
    assert all(set(item) == {"label", "probability"} for item in top_k)
    names = [n for n, _ in staging.DETECTIONS.columns]
    for values in staging.detection_rows(result):
        extra = dict(zip(names, values))
        assert [extra[k] for k in ("common_name", "window_start_s", "window_end_s",
                                   "in_range")] == [None] * 4


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"abc").decode()])
def test_an_embedding_that_is_not_float16_base64_is_a_bad_value(text: str) -> None:
    with pytest.raises(staging.BadValue):
        staging.embedding_bytes(text)
    assert staging.embedding_bytes(None) is None
    assert staging.embedding_bytes("") == b""


# ---- site input -------------------------------------------------------------------------------
def test_species_lists_are_tidied_and_deduplicated() -> None:
    assert parse_species(" Turdus  merula, Parus major,,Turdus merula ") == [
        "Turdus merula", "Parus major"]
    with pytest.raises(SiteInputError, match="--clear-lists"):
        parse_species(" , ")
    with pytest.raises(SiteInputError, match="longer than"):
        parse_species("x" * 201)


def test_station_ids_follow_the_envelope_pattern() -> None:
    assert check_station_id("st-zurich-01") == "st-zurich-01"
    for bad in ("ST-1", "st_1", "", "a" * 65):
        with pytest.raises(SiteInputError, match="bad station id"):
            check_station_id(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (SiteChange(latitude=10.0), "go together"),
        (SiteChange(longitude=10.0), "go together"),
        (SiteChange(latitude=91.0, longitude=0.0), r"\[-90, 90\]"),
        (SiteChange(latitude=0.0, longitude=-181.0), r"\[-180, 180\]"),
        (SiteChange(elevation_m=float("nan")), "metres"),
        (SiteChange(latitude=1.0, longitude=2.0, clear_location=True), "choose one"),
        (SiteChange(include=["A b"], clear_lists=True), "choose one"),
        (SiteChange(exclude=[]), "1 or more"),
    ],
)
def test_impossible_changes_are_refused(change: SiteChange, message: str) -> None:
    with pytest.raises(SiteInputError, match=message):
        change.check()


def test_a_change_touches_only_what_was_given() -> None:
    assert SiteChange(latitude=47.0, longitude=8.5).assignments() == {
        "latitude": 47.0, "longitude": 8.5}
    assert SiteChange(clear_location=True, name="").assignments() == {
        "name": None, "latitude": None, "longitude": None, "elevation_m": None}
    assert SiteChange(include=["A b"], clear_lists=False).assignments() == {
        "include_species": ["A b"]}
    assert SiteChange(clear_lists=True).assignments() == {
        "include_species": None, "exclude_species": None}
    assert SiteChange().assignments() == {}


def test_upsert_updates_only_the_given_columns() -> None:
    text = upsert_sql(["latitude", "longitude"]).as_string(None)
    assert '"latitude" = excluded."latitude"' in text and "name" not in text.split("RETURNING")[0]
    assert text.count("%s") == 3 and "now(), now()" in text
    assert "station_id = excluded.station_id" in upsert_sql([]).as_string(None)


def test_location_text_says_when_results_are_not_checked() -> None:
    assert location_text({"latitude": None, "longitude": 8.0}).startswith("none")
    assert location_text({"latitude": 47.5, "longitude": 8.25, "elevation_m": 408.0}) == \
        "47.500000, 8.250000, 408 m"


# ---- the sites cache ------------------------------------------------------------------------
def test_rows_become_sites_and_an_empty_include_list_means_none() -> None:
    sites = sites_from_rows([("a", 47.0, 8.0, ["X y"], None), ("b", None, 8.0, [], ["Z z"])])
    assert sites["a"] == StationSite(47.0, 8.0, frozenset({"X y"}), frozenset())
    assert sites["b"] == StationSite(None, None, None, frozenset({"Z z"}))
    assert not sites["b"].located and site_from_row(None, None, None, None) == StationSite()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sites_are_cached_for_the_ttl_and_kept_while_the_database_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    sites = DatabaseStationSites(None, ttl_s=60.0, clock=clock)  # type: ignore[arg-type]
    answers: list[object] = [
        {"a": StationSite(1.0, 2.0)},
        {"a": StationSite(3.0, 4.0)},
        psycopg.OperationalError("connection refused"),
        {"a": StationSite(5.0, 6.0)},
    ]
    calls = []

    def read() -> dict[str, StationSite]:
        calls.append(clock.now)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    monkeypatch.setattr(sites, "_read", read)
    assert sites.site("a") == StationSite(1.0, 2.0) and sites.site("nope") is None
    clock.now = 59.0
    assert sites.site("a") == StationSite(1.0, 2.0) and calls == [0.0]
    clock.now = 60.0
    assert sites.site("a") == StationSite(3.0, 4.0)
    clock.now = 120.0
    assert sites.site("a") == StationSite(3.0, 4.0)  # failed read: the last known rows
    clock.now = 150.0
    assert sites.site("a") == StationSite(3.0, 4.0) and calls == [0.0, 60.0, 120.0]
    clock.now = 180.0
    assert sites.site("a") == StationSite(5.0, 6.0)


def test_no_rows_yet_and_no_database_is_none_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    sites = DatabaseStationSites(None, ttl_s=1.0)  # type: ignore[arg-type]

    def read() -> dict[str, StationSite]:
        raise psycopg.OperationalError("down")

    monkeypatch.setattr(sites, "_read", read)
    assert sites.site("a") is None and sites.refresh() is False
