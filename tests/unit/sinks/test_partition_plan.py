from __future__ import annotations

from datetime import UTC, datetime

import pytest

from soundscape.sinks.partition_plan import (
    MAX_TIME,
    MIN_TIME,
    Partition,
    TimeRange,
    expired,
    floor_to_interval,
    free_range,
    interval_range,
    is_partition_name,
    parse_bound,
    partition_name,
    ranges_ahead,
    retention_horizon,
)


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "interval", "expected"),
    [
        (t(2026, 11, 23, 13, 5), "day", TimeRange(t(2026, 11, 23), t(2026, 11, 24))),
        (t(2026, 11, 23, 13, 5), "week", TimeRange(t(2026, 11, 23), t(2026, 11, 30))),  # a Monday
        (t(2026, 11, 29, 23, 59), "week", TimeRange(t(2026, 11, 23), t(2026, 11, 30))),
        (t(2026, 12, 31, 23, 59), "month", TimeRange(t(2026, 12, 1), t(2027, 1, 1))),
        (t(2028, 2, 29, 12), "month", TimeRange(t(2028, 2, 1), t(2028, 3, 1))),
        (t(2026, 1, 31), "month", TimeRange(t(2026, 1, 1), t(2026, 2, 1))),
    ],
)
def test_interval_ranges_follow_the_calendar(moment: datetime, interval, expected) -> None:  # type: ignore[no-untyped-def]
    assert interval_range(moment, interval) == expected


def test_floor_converts_other_time_zones_to_utc() -> None:
    from datetime import timedelta, timezone

    local = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # Nov 30 UTC
    assert floor_to_interval(local, "month") == t(2026, 11, 1)


def test_free_range_is_none_when_covered_and_clipped_between_neighbours() -> None:
    existing = [TimeRange(t(2026, 11, 1), t(2026, 12, 1)), TimeRange(t(2026, 12, 3), t(2026, 12, 10))]
    assert free_range(t(2026, 11, 15), "month", existing) is None
    # December: the month is cut at the end of November's partition and at Dec 3.
    assert free_range(t(2026, 12, 2), "month", existing) == TimeRange(t(2026, 12, 1), t(2026, 12, 3))
    # A week straddling an existing boundary starts where the old partition ends.
    assert free_range(t(2026, 12, 12), "week", existing) == TimeRange(t(2026, 12, 10), t(2026, 12, 14))
    assert free_range(t(2027, 1, 5), "month", existing) == TimeRange(t(2027, 1, 1), t(2027, 2, 1))


def test_free_range_next_to_open_ended_partitions() -> None:
    existing = [TimeRange(MIN_TIME, t(2020, 1, 1)), TimeRange(t(2030, 1, 1), MAX_TIME)]
    assert free_range(t(2019, 6, 1), "month", existing) is None
    assert free_range(t(2031, 6, 1), "month", existing) is None
    assert free_range(t(2029, 12, 5), "week", existing) == TimeRange(t(2029, 12, 3), t(2029, 12, 10))


def test_ranges_ahead_counts_the_current_interval_plus_ahead() -> None:
    spans = ranges_ahead(t(2026, 11, 23, 13), "month", 3)
    assert [s.lower for s in spans] == [t(2026, 11, 1), t(2026, 12, 1), t(2027, 1, 1), t(2027, 2, 1)]
    assert spans[-1].upper == t(2027, 3, 1)


def test_retention_expires_whole_partitions_only() -> None:
    parts = [
        Partition("chunks_p20260901", TimeRange(t(2026, 9, 1), t(2026, 10, 1))),
        Partition("chunks_p20261001", TimeRange(t(2026, 10, 1), t(2026, 11, 1))),
        Partition("chunks_p20261101", TimeRange(t(2026, 11, 1), t(2026, 12, 1))),
    ]
    horizon = retention_horizon(t(2026, 11, 23), 30)
    assert horizon == t(2026, 10, 24)
    assert [p.name for p in expired(parts, horizon)] == ["chunks_p20260901"]
    assert retention_horizon(t(2026, 11, 23), 0) is None
    assert expired(parts, None) == []


def test_partition_names_round_trip() -> None:
    name = partition_name("station_heartbeats", t(2026, 11, 1))
    assert name == "station_heartbeats_p20261101"
    assert is_partition_name(name, ["station_heartbeats", "chunks"])
    assert not is_partition_name(name, ["chunks"])
    assert not is_partition_name("chunks_archive", ["chunks"])


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')",
         TimeRange(t(2026, 11, 1), t(2026, 12, 1))),
        ("FOR VALUES FROM (MINVALUE) TO ('2020-01-01 00:00:00+00')",
         TimeRange(MIN_TIME, t(2020, 1, 1))),
        ("FOR VALUES FROM ('2030-01-01 00:00:00+00') TO (MAXVALUE)",
         TimeRange(t(2030, 1, 1), MAX_TIME)),
        ("FOR VALUES FROM ('2026-11-01 00:00:00.5+00') TO ('infinity')",
         TimeRange(datetime(2026, 11, 1, 0, 0, 0, 500000, tzinfo=UTC), MAX_TIME)),
        ("DEFAULT", None),
    ],
)
def test_partition_bounds_are_read_from_the_catalogue_text(expression: str, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_bound(expression) == expected
