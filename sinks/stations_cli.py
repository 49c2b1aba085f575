"""`soundscape stations set | show`: where stations are and which species they expect.

Registered in app/cli.py. Settings and database errors are handled as by the
other sinks commands (soundscape.sinks.cli's helpers).
"""

from __future__ import annotations

from typing import Any

import click

from soundscape.cli_context import current_settings, database_errors, echo_json

_WHY = """The location feeds the worker's species-range filter for windowed bundles such as
BirdNET: each result is checked against the species expected at that place and week,
and those outside are marked (in_range false in the detections table) or dropped
(SOUNDSCAPE_WORKER__LOCATION_FILTER=mark|drop|off). Stations without a location are not
checked (in_range NULL). Workers re-read the table every SOUNDSCAPE_WORKER__SITES_TTL_S
seconds, so changes apply without a restart. Fusion bundles ignore all of this."""


@click.group("stations", help=f"""Station locations and species lists in the results database.

{_WHY}
""")
def stations() -> None:
    """(help above: it shares the text on the location with the commands)"""


def _species(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    from soundscape.sinks.stations import SiteInputError, parse_species

    if value is None:
        return None
    try:
        return parse_species(value)
    except SiteInputError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _station_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from soundscape.sinks.stations import SiteInputError, check_station_id

    if value is None:
        return None
    try:
        return check_station_id(value)
    except SiteInputError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@stations.command("set", help=f"""Create or update STATION_ID's location, name and species lists.

Only what is given changes; a station the sink has not seen yet is created (first and
last seen: now). --lat and --lon go together.

{_WHY}

\b
Examples:
  soundscape stations set st-zurich-01 --lat 47.3769 --lon 8.5417 --elevation 408
  soundscape stations set st-zurich-01 --exclude "Sarothrura insularis"
  soundscape stations set st-zurich-01 --clear-location
""")
@click.argument("station_id", callback=_station_id)
@click.option("--lat", "latitude", type=click.FloatRange(-90, 90),
              help="Latitude in degrees, -90..90 (north positive).")
@click.option("--lon", "longitude", type=click.FloatRange(-180, 180),
              help="Longitude in degrees, -180..180 (east positive).")
@click.option("--elevation", "elevation_m", type=float, help="Elevation in metres (informative).")
@click.option("--name", help="A name for people (dashboards); \"\" removes it.")
@click.option("--include", callback=_species, metavar="NAMES",
              help="Comma-separated scientific names always counted as in range here (with "
                   "no location: the only ones). Replaces the list.")
@click.option("--exclude", callback=_species, metavar="NAMES",
              help="Comma-separated scientific names never in range here, whatever the range "
                   "model says. Replaces the list.")
@click.option("--clear-location", is_flag=True,
              help="Remove latitude, longitude and elevation (results are then not checked).")
@click.option("--clear-lists", is_flag=True, help="Remove the include and exclude lists.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored row as JSON.")
def stations_set(station_id: str, latitude: float | None, longitude: float | None,
                 elevation_m: float | None, name: str | None, include: list[str] | None,
                 exclude: list[str] | None, clear_location: bool, clear_lists: bool,
                 as_json: bool) -> None:
    from soundscape.sinks.stations import SiteChange, SiteInputError, set_station

    change = SiteChange(latitude, longitude, elevation_m, name, include, exclude,
                        clear_location, clear_lists)
    try:
        change.check()
    except SiteInputError as exc:
        raise click.UsageError(str(exc)) from None
    if not change.assignments():
        raise click.UsageError("nothing to set: give --lat/--lon, --elevation, --name, "
                               "--include, --exclude, --clear-location or --clear-lists")
    settings = current_settings()
    with database_errors():
        result = set_station(settings, station_id, latitude=latitude, longitude=longitude,
                             elevation_m=elevation_m, name=name, include=include,
                             exclude=exclude, clear_location=clear_location,
                             clear_lists=clear_lists)
    if as_json:
        echo_json(result.station | {"created": result.created})
        return
    click.echo(f"station {station_id} {'created' if result.created else 'updated'}")
    _describe(result.station)


@stations.command("show", help=f"""List stations with their location and species lists
(one station when STATION_ID is given; exit status 1 when it is unknown).

{_WHY}
""")
@click.argument("station_id", required=False, callback=_station_id)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def stations_show(station_id: str | None, as_json: bool) -> None:
    from soundscape.sinks.stations import list_stations

    settings = current_settings()
    with database_errors():
        rows = list_stations(settings, station_id)
    if as_json:
        echo_json(rows[0] if station_id and rows else rows)
    elif not rows:
        click.echo(f"no station {station_id}" if station_id else "no stations yet")
    else:
        for row in rows:
            _describe(row)
    if station_id and not rows:
        raise SystemExit(1)


def location_text(row: dict[str, Any]) -> str:
    """'47.376900, 8.541700, 408 m', or why results are not range-checked."""
    if row.get("latitude") is None or row.get("longitude") is None:
        return "none (results not range-checked)"
    text = f"{row['latitude']:.6f}, {row['longitude']:.6f}"
    if row.get("elevation_m") is not None:
        text += f", {row['elevation_m']:g} m"
    return text


def _describe(row: dict[str, Any]) -> None:
    name = f"  ({row['name']})" if row.get("name") else ""
    click.echo(f"{row['station_id']}{name}")
    click.echo(f"  location: {location_text(row)}")
    for key, what in (("include_species", "include"), ("exclude_species", "exclude")):
        names = row.get(key)
        click.echo(f"  {what}: {', '.join(names) if names else '-'}")
    click.echo(f"  seen: {row['first_seen']:%Y-%m-%d %H:%M:%S%z} .. "
               f"{row['last_seen']:%Y-%m-%d %H:%M:%S%z}")
