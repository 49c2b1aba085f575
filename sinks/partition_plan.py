"""Which time partitions a table needs, which exist, which have expired: pure calendar logic.

Partitions are half-open UTC ranges [lower, upper) of one interval (day, ISO week from
Monday, or calendar month), named `<table>_p<YYYYMMDD of lower>`. When the interval
setting changes, existing partitions stay as they are and new ones are clipped to the
free time between them, so ranges never overlap (PostgreSQL refuses overlaps).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Interval = Literal["day", "week", "month"]

#: Stand-ins for MINVALUE / MAXVALUE bounds an operator may have created by hand.
MIN_TIME = datetime.min.replace(tzinfo=UTC)
MAX_TIME = datetime.max.replace(tzinfo=UTC)

_NAME_RE = re.compile(r"^(?P<table>[a-z_]+)_p(?P<date>\d{8})$")
_BOUND_RE = re.compile(r"FOR VALUES FROM \((?P<lower>[^)]*)\) TO \((?P<upper>[^)]*)\)")


@dataclass(frozen=True, order=True)
class TimeRange:
    lower: datetime
    upper: datetime

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.lower <= moment < self.upper


@dataclass(frozen=True)
class Partition:
    name: str
    span: TimeRange


def floor_to_interval(moment: datetime, interval: Interval) -> datetime:
    """Start of the interval holding `moment` (UTC)."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_interval(start: datetime, interval: Interval) -> datetime:
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def interval_range(moment: datetime, interval: Interval) -> TimeRange:
    lower = floor_to_interval(moment, interval)
    return TimeRange(lower, next_interval(lower, interval))


def free_range(moment: datetime, interval: Interval, existing: Sequence[TimeRange]) -> TimeRange | None:
    """The range a new partition for `moment` should cover; None if one already does.

    `existing` must be sorted and non-overlapping (as PostgreSQL keeps them).
    """
    wanted = interval_range(moment, interval)
    lower, upper = wanted.lower, wanted.upper
    index = bisect.bisect_right([r.lower for r in existing], moment)
    if index > 0:
        before = existing[index - 1]
        if moment < before.upper:
            return None
        lower = max(lower, before.upper)
    if index < len(existing):
        upper = min(upper, existing[index].lower)
    return TimeRange(lower, upper)


def ranges_ahead(now: datetime, interval: Interval, ahead: int) -> list[TimeRange]:
    """The current interval and the `ahead` after it: what maintenance keeps ready."""
    spans, lower = [], floor_to_interval(now, interval)
    for _ in range(ahead + 1):
        upper = next_interval(lower, interval)
        spans.append(TimeRange(lower, upper))
        lower = upper
    return spans


def retention_horizon(now: datetime, retention_days: int) -> datetime | None:
    """Data older than this may go; None when retention is off (0 days)."""
    return now - timedelta(days=retention_days) if retention_days > 0 else None


def expired(partitions: Iterable[Partition], horizon: datetime | None) -> list[Partition]:
    """Partitions whose every row is older than the horizon."""
    if horizon is None:
        return []
    return [p for p in partitions if p.span.upper <= horizon]


def partition_name(table: str, lower: datetime) -> str:
    return f"{table}_p{lower.astimezone(UTC):%Y%m%d}"


def is_partition_name(name: str, tables: Iterable[str]) -> bool:
    match = _NAME_RE.match(name)
    return bool(match) and match.group("table") in set(tables)


def parse_bound(expression: str) -> TimeRange | None:
    """Range of `pg_get_expr(relpartbound)` text, read in a session whose TimeZone is UTC.

    None for a DEFAULT partition, which covers no range of its own.
    """
    match = _BOUND_RE.search(expression)
    if match is None:
        return None
    return TimeRange(_bound_value(match.group("lower")), _bound_value(match.group("upper")))


def _bound_value(text: str) -> datetime:
    text = text.strip()
    if text in ("MINVALUE", "'-infinity'"):
        return MIN_TIME
    if text in ("MAXVALUE", "'infinity'"):
        return MAX_TIME
    value = datetime.fromisoformat(text.strip("'"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
