"""`soundscape drift check` over PostgreSQL filled through the sink's writer: the same
alerts as the stream, stored idempotently, tumbling windows and a pinned baseline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from drift_testkit import CHANGE_MIN, START, hour_of_stations, rows

from soundscape.app.cli import cli
from soundscape.processors.drift import batch
from soundscape.settings import Settings, settings_env
from soundscape.sinks import migrate
from soundscape.sinks.writer import ResultBatch, ResultWriter

SINCE, UNTIL = "2026-06-01T04:00Z", "2026-06-01T05:00Z"


@pytest.fixture
def filled_db(db_settings: Settings) -> Iterator[Settings]:
    """The hour of five stations stored by the sink's writer; 10-min tumbling windows."""
    migrate.upgrade(db_settings)
    writer = ResultWriter(db_settings)
    try:
        counts = writer.write(ResultBatch(detections=hour_of_stations()))
    finally:
        writer.close()
    assert counts.chunks > 1400
    drift = db_settings.drift.model_copy(update={
        "window_s": 600, "hop_s": 600, "reference_windows": 3})
    yield db_settings.model_copy(update={"drift": drift})


def run(settings: Settings, *args: str) -> Result:
    env = settings_env(settings) | {"SOUNDSCAPE_LOG_FORMAT": "json"}
    return CliRunner().invoke(cli, ["drift", "check", *args], env=env, catch_exceptions=False)


def test_check_finds_each_drift_and_stores_reports_once(filled_db: Settings) -> None:
    result = run(filled_db, "--since", SINCE, "--until", UNTIL, "--alerts", "--store")
    assert result.exit_code == 1, result.output  # alerts
    alerting = {tuple(line.split()[i] for i in (0, 1, 2)) for line in result.output.splitlines()
                if "ALERT" in line}
    change = f"2026-06-01T04:{CHANGE_MIN}"
    assert ("noisy", change, "noise_floor") in alerting
    assert ("new-season", change, "label_js") in alerting
    assert ("gappy", change, "gaps") in alerting
    assert ("quiet", "2026-06-01T04:20", "silent") in alerting
    assert not [a for a in alerting if a[0] == "steady"]

    stored = rows(filled_db, "SELECT count(*), count(*) FILTER (WHERE alert) FROM drift_reports")
    total = int(result.output.strip().splitlines()[-1].split()[0])
    assert stored == [(total, len(alerting))]
    again = run(filled_db, "--since", SINCE, "--until", UNTIL, "--store", "--json")
    assert again.exit_code == 1
    assert rows(filled_db, "SELECT count(*) FROM drift_reports") == [(total,)]  # idempotent
    kinds = rows(filled_db, "SELECT DISTINCT kind FROM drift_reports ORDER BY 1")
    assert kinds == [("health",), ("input",), ("prediction",)]


def test_unchanged_station_alone_passes(filled_db: Settings) -> None:
    result = run(filled_db, "--station", "steady", "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 0, result.output
    assert "0 alerting" in result.output
    assert "noise_floor" in result.output  # the checks ran, and passed


def test_pinned_baseline_is_read_from_the_database(filled_db: Settings) -> None:
    drift = filled_db.drift.model_copy(update={
        "reference": "baseline", "baseline_start": START,
        "baseline_end": START + timedelta(minutes=30)})
    settings = filled_db.model_copy(update={"drift": drift})
    reports = batch.check(settings, START, START + timedelta(hours=1), ["noisy", "steady"])
    compared = [r for r in reports if r.check == "noise_floor"]
    assert {r.reference["mode"] for r in compared} == {"baseline"}
    assert min(r.window_start for r in compared) == int((START + timedelta(minutes=30))
                                                        .timestamp()) * 10**9
    alerts = {(r.station_id, r.check) for r in reports if r.alert}
    assert ("noisy", "noise_floor") in alerts
    assert not [a for a in alerts if a[0] == "steady"]
