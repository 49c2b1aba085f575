"""Grafana's PostgreSQL macros and variables expand as Grafana expands them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soundscape.infra.grafana.macros import (
    QueryContext,
    auto_interval,
    expand,
    format_interval,
    parse_interval,
)

START = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
END = START + timedelta(hours=6)
CTX = QueryContext(START, END, timedelta(minutes=5),
                   {"station": ["marsh-01", "o'hare"], "check": ["gaps"]})


def test_time_macros() -> None:
    assert expand("WHERE $__timeFilter(c.chunk_start)", CTX) == (
        "WHERE c.chunk_start BETWEEN '2026-06-01T04:00:00Z' AND '2026-06-01T10:00:00Z'")
    assert expand("f($__timeFrom(), $__timeTo())", CTX) == (
        "f('2026-06-01T04:00:00Z', '2026-06-01T10:00:00Z')")
    assert expand("SELECT $__timeGroupAlias(chunk_start, $__interval)", CTX) == (
        'SELECT floor(extract(epoch from chunk_start)/300)*300 AS "time"')
    assert expand("$__timeGroup(t, '1h')", CTX) == "floor(extract(epoch from t)/3600)*3600"
    assert expand("$__time(t)", CTX) == 't AS "time"'
    assert expand("$__unixEpochFilter(e)", CTX) == "e >= 1780286400 AND e <= 1780308000"
    assert expand("x / $__interval_ms", CTX) == "x / 300000"


def test_multi_value_variables_are_quoted_lists() -> None:
    assert expand("station_id IN ($station)", CTX) == "station_id IN ('marsh-01','o''hare')"
    assert expand("${station}|${check:csv}|${station:raw}", CTX) == (
        "'marsh-01','o''hare'|gaps|marsh-01,o'hare")


def test_unknown_variables_and_macros_are_errors() -> None:
    with pytest.raises(ValueError, match=r"\$species"):
        expand("label IN ($species)", CTX)
    with pytest.raises(ValueError, match="unknown Grafana macro"):
        expand("$__timeShift(t)", CTX)


def test_intervals_round_like_grafana() -> None:
    assert auto_interval(START, END, 500) == timedelta(seconds=30)  # 43.2 s -> 30 s
    assert auto_interval(START, START + timedelta(days=1), 300) == timedelta(minutes=5)
    assert auto_interval(START, END, 500, timedelta(minutes=1)) == timedelta(minutes=1)
    assert parse_interval("'5m'") == timedelta(minutes=5)
    assert format_interval(timedelta(hours=2)) == "2h"
    assert format_interval(timedelta(milliseconds=1500)) == "1500ms"
    with pytest.raises(ValueError):
        parse_interval("fortnight")
