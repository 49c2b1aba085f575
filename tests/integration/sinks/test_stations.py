"""`soundscape stations set | show` against the real database, their refusals of bad
input, and DatabaseStationSites: the worker's cached, outage-proof view of the sites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import structlog
from click.testing import CliRunner, Result
from pydantic import SecretStr
from sink_testkit import scalar

from soundscape.app.cli import App, cli
from soundscape.errors import UserError
from soundscape.infra.process import free_port
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import NS, detection
from soundscape.sinks.station_sites import DatabaseStationSites
from soundscape.sinks.stations import set_station
from soundscape.sinks.writer import ResultBatch, ResultWriter
from soundscape.station_sites import StationSite


def invoke(settings: Settings, *args: str) -> Result:
    """The command as `soundscape ...` runs it, with this test's settings."""
    app = App()
    app._settings = settings
    return CliRunner().invoke(cli, list(args), obj=app)


def closed(settings: Settings) -> Settings:
    """The same settings, but the database on a port nothing listens on."""
    url = SecretStr(f"postgresql://x:y@127.0.0.1:{free_port()}/nothing")
    return settings.model_copy(update={"postgres": settings.postgres.model_copy(
        update={"url": url, "reader_url": url})})


def test_set_creates_updates_and_show_lists(results_db: Settings) -> None:
    created = invoke(results_db, "stations", "set", "st-zurich", "--lat", "47.3769", "--lon",
                     "8.5417", "--elevation", "408", "--name", "Zurich roof",
                     "--include", "Turdus merula, Parus major")
    assert created.exit_code == 0, created.output
    assert "station st-zurich created" in created.output
    assert "47.376900, 8.541700, 408 m" in created.output
    assert scalar(results_db, "SELECT first_seen = last_seen AND first_seen > now() - "
                              "interval '1 minute' FROM stations WHERE station_id = 'st-zurich'")

    updated = invoke(results_db, "stations", "set", "st-zurich", "--exclude",
                     "Sarothrura insularis", "--json")
    assert updated.exit_code == 0, updated.output
    row = json.loads(updated.output)
    assert row["created"] is False and row["latitude"] == 47.3769 and row["name"] == "Zurich roof"
    assert row["include_species"] == ["Turdus merula", "Parus major"]
    assert row["exclude_species"] == ["Sarothrura insularis"]

    assert invoke(results_db, "stations", "set", "st-bare", "--name", "no place").exit_code == 0
    shown = invoke(results_db, "stations", "show", "--json")
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert [s["station_id"] for s in listed] == ["st-bare", "st-zurich"]
    assert listed[0]["latitude"] is None and listed[1]["elevation_m"] == 408.0

    text = invoke(results_db, "stations", "show", "st-bare")
    assert text.exit_code == 0 and "location: none (results not range-checked)" in text.output
    assert "include: -" in text.output
    unknown = invoke(results_db, "stations", "show", "st-nowhere")
    assert unknown.exit_code == 1 and "no station st-nowhere" in unknown.output

    cleared = invoke(results_db, "stations", "set", "st-zurich", "--clear-location",
                     "--clear-lists", "--json")
    row = json.loads(cleared.output)
    assert (row["latitude"], row["longitude"], row["elevation_m"]) == (None, None, None)
    assert row["include_species"] is None and row["exclude_species"] is None
    assert row["name"] == "Zurich roof"


def test_the_sink_keeps_a_site_set_before_the_station_sent_anything(
        results_db: Settings) -> None:
    set_station(results_db, "station-000", latitude=-4.5, longitude=-73.0)
    start = (time.time_ns() // NS - 86_400) // 10 * 10 * NS
    writer = ResultWriter(results_db)
    try:
        writer.write(ResultBatch([detection("station-000", start)]))
    finally:
        writer.close()
    first_seen, latitude = _one(results_db, "SELECT extract(epoch FROM first_seen), latitude "
                                            "FROM stations WHERE station_id = 'station-000'")
    assert int(first_seen) == start // NS and latitude == -4.5


def test_bad_input_is_refused_clearly(results_db: Settings) -> None:
    cases: list[tuple[list[str], str]] = [
        (["st-a", "--lat", "47"], "latitude and longitude go together"),
        (["st-a", "--lon", "8"], "latitude and longitude go together"),
        (["st-a", "--lat", "91", "--lon", "8"], "91.0 is not in the range -90<=x<=90"),
        (["st-a", "--lat", "47", "--lon", "-181"], "-181.0 is not in the range"),
        (["ST_A", "--lat", "47", "--lon", "8"], "bad station id 'ST_A'"),
        (["st-a", "--include", " , "], "no species names given"),
        (["st-a", "--lat", "1", "--lon", "2", "--clear-location"], "choose one"),
        (["st-a"], "nothing to set"),
    ]
    for args, message in cases:
        result = invoke(results_db, "stations", "set", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    bad_show = invoke(results_db, "stations", "show", "Bad!")
    assert bad_show.exit_code == 2 and "bad station id" in bad_show.output
    assert scalar(results_db, "SELECT count(*) FROM stations") == 0


def test_a_database_without_the_site_columns_says_to_upgrade(db_settings: Settings) -> None:
    migrate.upgrade(db_settings, "0002")
    result = invoke(db_settings, "stations", "set", "st-a", "--lat", "1", "--lon", "2")
    assert isinstance(result.exception, UserError), result.output
    assert "soundscape db upgrade" in str(result.exception)


def test_help_says_what_the_location_is_for() -> None:
    for args in (["stations"], ["stations", "set"], ["stations", "show"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "species-range filter for windowed bundles such as BirdNET" in text, args
        assert "marked" in text and "dropped" in text


def test_the_installed_command_sets_shows_and_reports_an_unreachable_database(
        results_db: Settings) -> None:
    def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ) | {
            "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
        }
        if settings.postgres.url is not None:
            env["SOUNDSCAPE_POSTGRES__URL"] = settings.postgres.url.get_secret_value()
        return subprocess.run([sys.executable, "-m", "soundscape", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    done = run(results_db, "stations", "set", "st-cli", "--lat", "-4.5", "--lon", "-73")
    assert done.returncode == 0, done.stderr
    shown = run(results_db, "stations", "show", "st-cli", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["longitude"] == -73.0

    failed = run(closed(results_db), "stations", "show")
    assert failed.returncode == 3
    assert "cannot reach the database" in failed.stderr and "Traceback" not in failed.stderr
    half = run(results_db, "stations", "set", "st-cli", "--lat", "10")
    assert half.returncode == 2 and "go together" in half.stderr


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sites_come_from_the_table_refresh_after_the_ttl_and_survive_an_outage(
        results_db: Settings) -> None:
    set_station(results_db, "st-site", latitude=47.0, longitude=8.0,
                include=["Turdus merula"], exclude=["Sarothrura insularis"])
    set_station(results_db, "st-unplaced", name="somewhere")
    clock = Clock()
    sites = DatabaseStationSites(results_db, ttl_s=60.0, clock=clock)
    assert sites.site("st-site") == StationSite(47.0, 8.0, frozenset({"Turdus merula"}),
                                                frozenset({"Sarothrura insularis"}))
    unplaced = sites.site("st-unplaced")
    assert unplaced is not None and unplaced.latitude is None and not unplaced.located
    assert sites.site("st-unknown") is None

    set_station(results_db, "st-site", latitude=-4.5, longitude=-73.0, clear_lists=True)
    clock.now += 30
    assert sites.site("st-site").latitude == 47.0  # type: ignore[union-attr]  # cached
    clock.now += 30
    assert sites.site("st-site") == StationSite(-4.5, -73.0)  # refreshed after the ttl

    sites.settings = closed(results_db)  # the database goes away
    clock.now += 60
    with structlog.testing.capture_logs() as logs:
        assert sites.site("st-site") == StationSite(-4.5, -73.0)  # the last known
    assert any(e["event"].startswith("station sites unavailable") for e in logs), logs

    never = DatabaseStationSites(closed(results_db), ttl_s=60.0)
    assert never.site("st-site") is None and never.refresh() is False


def _one(settings: Settings, query: str) -> tuple[Any, ...]:
    import psycopg

    from soundscape.database import database_url

    with psycopg.connect(database_url(settings)) as conn:
        return conn.execute(query).fetchone()  # type: ignore[return-value]
