"""Grafana's PostgreSQL macros and template variables, expanded as Grafana expands them.

`soundscape report` runs the dashboards' own queries through this, and the tests run
every panel's query through it against the real schema, so what Grafana would send is
what is checked. Grafana interpolates template variables first ($station, $__interval),
then the data source's macros ($__timeFilter(col), $__timeGroupAlias(col, 5m), ...).
Reference: grafana.com/docs/grafana/latest/datasources/postgres/ (Macros).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Grafana's interval rounding (kbn.roundInterval): below the bound, the nice interval.
_ROUNDING_MS: tuple[tuple[int, int], ...] = (
    (1_500, 1_000), (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000),
    (25_000, 20_000), (45_000, 30_000), (90_000, 60_000), (210_000, 120_000),
    (450_000, 300_000), (1_050_000, 600_000), (2_100_000, 900_000), (4_500_000, 1_800_000),
    (9_000_000, 3_600_000), (25_200_000, 7_200_000), (54_000_000, 21_600_000),
    (129_600_000, 43_200_000),
)
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval(text: str) -> timedelta:
    """'5m', '30s', '1h', '250ms' (quotes allowed) as a timedelta."""
    match = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w)'?\s*", text)
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r} (e.g. 30s, 5m, 1h)")
    return timedelta(seconds=int(match.group(1)) * _UNITS_S[match.group(2)])


def format_interval(interval: timedelta) -> str:
    ms = round(interval.total_seconds() * 1000)
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if ms % (seconds * 1000) == 0:
            return f"{ms // (seconds * 1000)}{unit}"
    return f"{ms}ms"


def auto_interval(start: datetime, end: datetime, max_data_points: int,
                  minimum: timedelta | None = None) -> timedelta:
    """$__interval: the range over the panel's data points, rounded as Grafana rounds,
    never below the panel's minimum interval."""
    raw_ms = (end - start).total_seconds() * 1000 / max_data_points
    nice = next((nice for bound, nice in _ROUNDING_MS if raw_ms < bound), 86_400_000)
    interval = timedelta(milliseconds=nice)
    return max(interval, minimum) if minimum else interval


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _timestamp(moment: datetime) -> str:
    return "'" + moment.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


@dataclass(frozen=True)
class QueryContext:
    """A concrete dashboard state: time range, interval, the variables' selected values."""

    start: datetime  # aware, UTC
    end: datetime
    interval: timedelta = timedelta(minutes=1)
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)


def interpolate_variables(sql: str, ctx: QueryContext) -> str:
    """$name, ${name} and ${name:format} with the selected values, SQL-quoted and
    comma-separated (Grafana's PostgreSQL default); $__interval(_ms) as Grafana's."""
    globals_ = {"__interval_ms": str(int(ctx.interval.total_seconds() * 1000)),
                "__interval": format_interval(ctx.interval)}

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        fmt = match.group("format")
        if name in globals_:
            return globals_[name]
        if name not in ctx.variables:
            return match.group(0)  # a macro or unknown: left for the next step / Grafana
        values = list(ctx.variables[name])
        if fmt in ("raw", "csv"):
            return ",".join(values)
        return ",".join(sql_literal(v) for v in values) if values else "NULL"

    pattern = re.compile(
        r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<plain>\w+)\b(?!\s*\()")
    return pattern.sub(replace, sql)


def expand_macros(sql: str, ctx: QueryContext) -> str:
    def args(text: str) -> list[str]:
        return [a.strip() for a in text.split(",")] if text.strip() else []

    def replace(match: re.Match[str]) -> str:
        name, given = match.group(1), args(match.group(2))
        if name == "time":
            return f'{given[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {given[0]}) AS "time"'
        if name == "timeFilter":
            return f"{given[0]} BETWEEN {_timestamp(ctx.start)} AND {_timestamp(ctx.end)}"
        if name == "timeFrom":
            return _timestamp(ctx.start)
        if name == "timeTo":
            return _timestamp(ctx.end)
        if name in ("timeGroup", "timeGroupAlias"):
            seconds = int(parse_interval(given[1]).total_seconds())
            group = f"floor(extract(epoch from {given[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "timeGroupAlias" else "")
        if name == "unixEpochFilter":
            return (f"{given[0]} >= {int(ctx.start.timestamp())} AND "
                    f"{given[0]} <= {int(ctx.end.timestamp())}")
        raise ValueError(f"unknown Grafana macro $__{name}")

    return re.sub(r"\$__(\w+)\(([^()]*)\)", replace, sql)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL Grafana would send for this dashboard state."""
    expanded = expand_macros(interpolate_variables(sql, ctx), ctx)
    leftover = re.search(r"\$\{?\w+", expanded)
    if leftover:
        raise ValueError(f"{leftover.group(0)} has no value in this context")
    return expanded
