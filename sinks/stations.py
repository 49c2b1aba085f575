"""Stations' sites in the results database: what `soundscape stations set | show` do.

A station's latitude and longitude feed the worker's species-range filter for windowed
bundles (BirdNET): results for species not expected at that place and week are marked
(`in_range` false) or dropped (`SOUNDSCAPE_WORKER__LOCATION_FILTER`). The include and
exclude lists override the range model for one station. The sink adds a station row when
its first result arrives; setting a site first creates the row (first_seen and last_seen
now, as both are NOT NULL), which the sink's data times then widen.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from soundscape.envelope import STATION_ID_RE
from soundscape.errors import UserError
from soundscape.settings import Settings
from soundscape.sinks.connection import connect

#: Longest scientific name accepted in a species list (labels are at most 200 characters).
MAX_NAME = 200

COLUMNS = ("station_id", "name", "latitude", "longitude", "elevation_m", "include_species",
           "exclude_species", "first_seen", "last_seen")


class SiteInputError(ValueError):
    """A station id, coordinate or species list that cannot be stored; says why."""


def check_station_id(station_id: str) -> str:
    if not STATION_ID_RE.fullmatch(station_id):
        raise SiteInputError(
            f"bad station id {station_id!r}: use 1-64 of a-z, 0-9 and '-' (as stations send)")
    return station_id


def parse_species(text: str) -> list[str]:
    """'Turdus merula, Parus major' -> names, whitespace tidied, duplicates dropped.

    Names are scientific names as the bundle's labels spell them (BirdNET: "Genus
    species"); an empty list is refused, as it would read as "no list" (--clear-lists)."""
    names: list[str] = []
    for part in text.split(","):
        name = " ".join(part.split())
        if not name:
            continue
        if len(name) > MAX_NAME:
            raise SiteInputError(f"species name longer than {MAX_NAME} characters: {name[:40]}...")
        if name not in names:
            names.append(name)
    if not names:
        raise SiteInputError("no species names given (comma-separated scientific names); "
                             "to remove the lists use --clear-lists")
    return names


@dataclass(frozen=True)
class SiteChange:
    """What `set_station` was asked to change; None leaves a value as it is."""

    latitude: float | None = None
    longitude: float | None = None
    elevation_m: float | None = None
    name: str | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    clear_location: bool = False
    clear_lists: bool = False

    def check(self) -> None:
        """Refuse a half or impossible location and contradictory options."""
        if (self.latitude is None) != (self.longitude is None):
            raise SiteInputError("latitude and longitude go together: give both (--lat and --lon)")
        if self.latitude is not None and not -90.0 <= self.latitude <= 90.0:
            raise SiteInputError(f"latitude {self.latitude} is not in [-90, 90]")
        if self.longitude is not None and not -180.0 <= self.longitude <= 180.0:
            raise SiteInputError(f"longitude {self.longitude} is not in [-180, 180]")
        if self.elevation_m is not None and not math.isfinite(self.elevation_m):
            raise SiteInputError(f"elevation {self.elevation_m} is not a number of metres")
        if self.clear_location and (self.latitude is not None or self.elevation_m is not None):
            raise SiteInputError("clearing the location and setting it at once: choose one")
        if self.clear_lists and (self.include is not None or self.exclude is not None):
            raise SiteInputError("clearing the species lists and setting one at once: choose one")
        for names in (self.include, self.exclude):
            if names is not None and (not names or any(not n or len(n) > MAX_NAME for n in names)):
                raise SiteInputError("species lists take 1 or more names of 1-200 characters")

    def assignments(self) -> dict[str, Any]:
        """Column -> new value, for the columns this change touches (in table order)."""
        values: dict[str, Any] = {}
        if self.name is not None:
            values["name"] = self.name.strip() or None
        if self.clear_location:
            values |= {"latitude": None, "longitude": None, "elevation_m": None}
        if self.latitude is not None:
            values |= {"latitude": self.latitude, "longitude": self.longitude}
        if self.elevation_m is not None:
            values["elevation_m"] = self.elevation_m
        if self.clear_lists:
            values |= {"include_species": None, "exclude_species": None}
        if self.include is not None:
            values["include_species"] = list(self.include)
        if self.exclude is not None:
            values["exclude_species"] = list(self.exclude)
        return values


@dataclass(frozen=True)
class SetResult:
    created: bool
    station: dict[str, Any]


def upsert_sql(columns: Sequence[str]) -> sql.Composed:
    """INSERT a new station (seen now) or UPDATE only `columns` of an existing one."""
    names = [sql.Identifier(c) for c in columns]
    updates = [sql.SQL("{0} = excluded.{0}").format(n) for n in names] or [
        sql.SQL("station_id = excluded.station_id")]  # touch the row, so RETURNING sees it
    return sql.SQL(
        "INSERT INTO stations (station_id, first_seen, last_seen{cols}) "
        "VALUES (%s, now(), now(){values}) "
        "ON CONFLICT (station_id) DO UPDATE SET {updates} "
        "RETURNING (xmax = 0) AS created, {returning}"
    ).format(
        cols=sql.SQL("").join(sql.SQL(", ") + n for n in names),
        values=sql.SQL("").join(sql.SQL(", %s") for _ in names),
        updates=sql.SQL(", ").join(updates),
        returning=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
    )


def set_station(
    settings: Settings,
    station_id: str,
    *,
    latitude: float | None = None,
    longitude: float | None = None,
    elevation_m: float | None = None,
    name: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    clear_location: bool = False,
    clear_lists: bool = False,
) -> SetResult:
    """Create or update a station's site; only what is given changes. Bad input raises
    UserError; psycopg.OperationalError when the database cannot be reached."""
    change = SiteChange(latitude, longitude, elevation_m, name, include, exclude,
                        clear_location, clear_lists)
    try:
        check_station_id(station_id)
        change.check()
    except SiteInputError as exc:
        raise UserError(str(exc)) from None
    values = change.assignments()
    with _schema_errors(), connect(settings, application_name="soundscape-stations") as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(upsert_sql(list(values)), [station_id, *values.values()]).fetchone()
    assert row is not None
    created = bool(row.pop("created"))
    return SetResult(created, row)


def list_stations(settings: Settings, station_id: str | None = None) -> list[dict[str, Any]]:
    """Stations with their sites, by id; one (or none) when station_id is given."""
    query = sql.SQL("SELECT {cols} FROM stations WHERE %s::text IS NULL OR station_id = %s "
                    "ORDER BY station_id").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))
    with _schema_errors(), connect(settings, application_name="soundscape-stations") as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, [station_id, station_id]).fetchall()


@contextlib.contextmanager
def _schema_errors() -> Iterator[None]:
    """A database not migrated to the site columns is a clear message, not a traceback."""
    try:
        yield
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable) as exc:
        raise UserError(
            f"the results database has no station sites yet: {exc.diag.message_primary}",
            hint="run `soundscape db upgrade`",
        ) from None
