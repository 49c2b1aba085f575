"""Start times and station ids from names, metadata and the command line."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from soundscape.errors import UserError
from soundscape.producers import file_times as ft

UTC = timezone.utc
T0 = 1_714_541_400 * 10**9  # 2024-05-01 05:30:00 UTC


def test_audiomoth_names_are_utc_by_default() -> None:
    assert ft.start_from_name("20240501_053000", UTC) == T0
    assert ft.start_from_name("20240501_053000_T", UTC) == T0


def test_song_meter_names_give_time_and_station() -> None:
    assert ft.start_from_name("SMA01234_20240501_053000", UTC) == T0
    assert ft.start_from_name("S4A1_0+1_20240501_053000", UTC) == T0
    assert ft.station_from_path(Path("/x/any/SMA01234_20240501_053000.wav")) == "sma01234"


def test_names_are_read_in_the_given_zone() -> None:
    berlin = ft.zone("Europe/Berlin")  # CEST, UTC+2 in May
    assert ft.start_from_name("20240501_073000", berlin) == T0


def test_unknown_zone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="time zone"):
        ft.zone("Mars/Olympus")


def test_audiomoth_comment_with_offset() -> None:
    comment = "Recorded at 06:30:00 01/05/2024 (UTC+1) by AudioMoth 24A04F085EB6B9B1 at medium gain"
    assert ft.start_from_metadata({"comment": comment}) == T0
    plain = "Recorded at 05:30:00 01/05/2024 (UTC) by AudioMoth 24A04F085EB6B9B1"
    assert ft.start_from_metadata({"comment": plain}) == T0


def test_iso_date_tag_counts_only_with_a_zone() -> None:
    assert ft.start_from_metadata({"date": "2024-05-01T05:30:00Z"}) == T0
    assert ft.start_from_metadata({"date": "2024-05-01T07:30:00+02:00"}) == T0
    assert ft.start_from_metadata({"date": "2024-05-01 05:30:00"}) is None
    assert ft.start_from_metadata({"date": "2024"}) is None


def test_custom_pattern_found_anywhere_in_the_name() -> None:
    assert ft.start_from_pattern("site4-rec-2024-05-01T053000.wav", "rec-%Y-%m-%dT%H%M%S",
                                 UTC) == T0
    assert ft.start_from_pattern("nothing-here.wav", "rec-%Y-%m-%dT%H%M%S", UTC) is None
    with pytest.raises(UserError, match="not supported"):
        ft.pattern_regex("%Q")


def test_parse_start_and_errors() -> None:
    assert ft.parse_start("2024-05-01T05:30:00Z") == T0
    assert ft.parse_start("2024-05-01T07:30:00", ft.zone("Europe/Berlin")) == T0
    with pytest.raises(UserError, match="ISO 8601"):
        ft.parse_start("yesterday")


def test_to_ns_is_exact_to_the_microsecond() -> None:
    moment = datetime(2024, 5, 1, 5, 30, 0, 123456, tzinfo=UTC)
    assert ft.to_ns(moment) == T0 + 123_456_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Marsh_03", "marsh-03"), ("  North Field (A) ", "north-field-a"), ("___", None),
     ("x" * 80, "x" * 64)],
)
def test_station_ids_are_sanitized(text: str, expected: str | None) -> None:
    assert ft.sanitize_station_id(text) == expected


def test_station_from_folder_for_audiomoth_names() -> None:
    assert ft.station_from_path(Path("/cards/Marsh 03/20240501_053000.WAV")) == "marsh-03"
