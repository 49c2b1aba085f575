"""Times on the command line: ISO 8601, `now`, or a duration ago."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from soundscape.cli_time import TIME, parse_time

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("90m", NOW - timedelta(minutes=90)),
    ("6h", NOW - timedelta(hours=6)),
    ("1.5d", NOW - timedelta(days=1.5)),
    ("2w", NOW - timedelta(weeks=2)),
    ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
    ("2026-05-01T04:00Z", datetime(2026, 5, 1, 4, tzinfo=UTC)),
    ("2026-05-01T06:00+02:00", datetime(2026, 5, 1, 4, tzinfo=UTC)),
])
def test_times_parse(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_a_bad_time_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday-ish", NOW)
    with pytest.raises(click.BadParameter, match="duration"):
        TIME.convert("soon", None, None)
