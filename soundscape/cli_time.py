"""Times on the command line: an ISO 8601 time (UTC if it names no zone), `now`, or a
duration back from now (`90m`, `6h`, `7d`, `2w`), so `--since 24h` reads naturally."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days",
          "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """`text` as an aware UTC datetime; ValueError says what is accepted."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    if value == "now":
        return now
    ago = _AGO.match(value)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-06-01T04:00Z), `now`, "
            "or a duration back from now (90m, 6h, 7d)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()
