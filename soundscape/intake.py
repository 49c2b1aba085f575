"""Plausibility of station times, shared by every reader of station data.

A chunk stamped 1970 or 2262 is a broken clock or a forgery. Stored, it would make
PostgreSQL create a partition at a producer's will (or find none that can hold it) and
push the drift checks' event time centuries ahead, closing every open window. So the
worker, the sink and the drift checks refuse such times alike, with one reason code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from soundscape.settings import IntakeSettings

#: Reason code of a time outside the window (DLQ header, metric label).
IMPLAUSIBLE_TIME = "implausible_time"

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TimeWindow:
    earliest_ns: int
    max_future_ns: int

    @classmethod
    def from_settings(cls, intake: IntakeSettings) -> TimeWindow:
        return cls(int(intake.earliest.timestamp() * _NS), int(intake.max_future_s * _NS))

    def problem(self, name: str, ns: int, now_ns: int | None = None) -> str | None:
        """Why `ns` is implausible, or None when it is fine."""
        if ns < self.earliest_ns:
            return f"{name}: {_iso(ns)} is before the earliest time accepted ({_iso(self.earliest_ns)})"
        now = time.time_ns() if now_ns is None else now_ns
        if ns > now + self.max_future_ns:
            ahead = (ns - now) / _NS
            return (f"{name}: {_iso(ns)} is {ahead:,.0f} s ahead of this host's clock "
                    f"(at most {self.max_future_ns / _NS:,.0f} s accepted)")
        return None


def _iso(ns: int) -> str:
    try:
        return datetime.fromtimestamp(ns / _NS, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns"
