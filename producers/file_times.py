"""When a recording started and which station made it, from its name or metadata.

Rules, first match wins:
  start:   an explicit start (command line) > a --time-format pattern found in the name >
           the file's metadata (AudioMoth's comment "Recorded at HH:MM:SS DD/MM/YYYY
           (UTC+h)", or an ISO date-time in the date tag) > the name: Song Meter
           `PREFIX_YYYYMMDD_HHMMSS` or AudioMoth `YYYYMMDD_HHMMSS`.
  station: explicit > Song Meter prefix > the parent folder's name; lower-cased, runs of
           characters outside [a-z0-9-] become '-'.
Times in names carry no zone: they are read in `timezone` (AudioMoth writes UTC; Song
Meters usually local time).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from soundscape.envelope import STATION_ID_RE
from soundscape.errors import UserError

SONG_METER_RE = re.compile(r"^(?P<prefix>.*?[A-Za-z].*?)_(?:\d\+\d_)?(?P<d>\d{8})_(?P<t>\d{6})")
AUDIOMOTH_RE = re.compile(r"(?<!\d)(?P<d>\d{8})_(?P<t>\d{6})(?!\d)")
AUDIOMOTH_COMMENT_RE = re.compile(
    r"Recorded at (?P<t>\d{2}:\d{2}:\d{2}) (?P<d>\d{2}/\d{2}/\d{4}) "
    r"\(UTC(?:(?P<sign>[+-])(?P<h>\d{1,2})(?::(?P<m>\d{2}))?)?\)"
)
ISO_DATE_TIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"
)
_STRPTIME_PIECES = {
    "%Y": r"\d{4}", "%y": r"\d{2}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}",
    "%M": r"\d{2}", "%S": r"\d{2}", "%j": r"\d{3}", "%f": r"\d{1,6}",
    "%z": r"[+-]\d{2}:?\d{2}|Z", "%%": "%",
}


def zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Berlin, or UTC"
        ) from None


def to_ns(moment: datetime) -> int:
    """ns since 1970 UTC, exact (datetime's float timestamp would round microseconds)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def parse_start(text: str, tz: tzinfo = timezone.utc) -> int:
    """An ISO 8601 date-time from the command line (zone-less: read in `tz`), as ns."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"cannot read {text!r} as a date and time",
            hint="use ISO 8601, e.g. 2024-05-01T05:30:00Z",
        ) from None
    return to_ns(moment if moment.tzinfo else moment.replace(tzinfo=tz))


def pattern_regex(time_format: str) -> re.Pattern[str]:
    """A regex finding text that `time_format` (strptime) can read, anywhere in a name."""
    out, i = [], 0
    while i < len(time_format):
        piece = time_format[i : i + 2]
        if piece in _STRPTIME_PIECES:
            out.append(f"(?:{_STRPTIME_PIECES[piece]})")
            i += 2
        elif time_format[i] == "%":
            raise UserError(
                f"--time-format {time_format!r}: {piece!r} is not supported",
                hint="use %Y %y %m %d %H %M %S %j %f %z and literal text",
            )
        else:
            out.append(re.escape(time_format[i]))
            i += 1
    return re.compile("".join(out))


def start_from_pattern(name: str, time_format: str, tz: tzinfo) -> int | None:
    match = pattern_regex(time_format).search(name)
    if not match:
        return None
    try:
        moment = datetime.strptime(match.group(0), time_format)
    except ValueError:
        return None
    return to_ns(moment if moment.tzinfo else moment.replace(tzinfo=tz))


def start_from_metadata(metadata: dict[str, str]) -> int | None:
    comment = metadata.get("comment") or ""
    match = AUDIOMOTH_COMMENT_RE.search(comment)
    if match:
        offset = timedelta(0)
        if match["sign"]:
            offset = timedelta(hours=int(match["h"]), minutes=int(match["m"] or 0))
            offset = -offset if match["sign"] == "-" else offset
        try:
            moment = datetime.strptime(f"{match['d']} {match['t']}", "%d/%m/%Y %H:%M:%S")
        except ValueError:
            return None
        return to_ns(moment.replace(tzinfo=timezone(offset)))
    date = (metadata.get("date") or "").strip()
    if ISO_DATE_TIME_RE.fullmatch(date):
        try:
            moment = datetime.fromisoformat(date.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo:  # a zone-less date tag is too ambiguous to trust over the name
            return to_ns(moment)
    return None


def start_from_name(name: str, tz: tzinfo) -> int | None:
    for regex in (SONG_METER_RE, AUDIOMOTH_RE):
        match = regex.search(name)
        if match:
            try:
                moment = datetime.strptime(match["d"] + match["t"], "%Y%m%d%H%M%S")
            except ValueError:
                continue
            return to_ns(moment.replace(tzinfo=tz))
    return None


def sanitize_station_id(text: str) -> str | None:
    """A station id from free text, or None if nothing usable is left."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:64].strip("-")
    return cleaned if cleaned and STATION_ID_RE.fullmatch(cleaned) else None


def station_from_path(path: Path) -> str | None:
    match = SONG_METER_RE.match(path.stem)
    if match:
        station = sanitize_station_id(match["prefix"])
        if station:
            return station
    return sanitize_station_id(path.parent.name) if path.parent.name else None
