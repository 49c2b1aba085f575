"""The main job (`soundscape demo`) end to end against the real services: every chunk
replayed is scored and stored once, the labels match the archive's, the drift checks
and the report run over the stored results, and a second run goes on where the first
ended instead of replaying chunk ids already stored."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import psycopg

from soundscape.database import database_url
from soundscape.app.demo import run_demo
from soundscape.settings import Settings
from soundscape.sinks.clip_files import clips_dir
from soundscape.sinks import migrate


def test_demo_runs_the_pipeline_end_to_end_twice(kafka_settings: Settings,
                                                 db_settings: Settings) -> None:
    migrate.upgrade(db_settings)
    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres})

    first = run_demo(settings, stations=2, minutes=3, progress=False, timeout_s=300)
    assert first.chunks_expected == 2 * 3 * 6
    assert (first.chunks_stored, first.dead_lettered) == (first.chunks_expected, 0)
    assert first.accuracy["f1"] >= 0.8, first.accuracy
    assert first.latency_ms["published_to_written"]["p50"] > 0

    # The drift checks stored their reports; an unchanged archive raises no alert.
    with psycopg.connect(database_url(settings, "reader")) as conn:
        stored = conn.execute("SELECT count(*), count(*) FILTER (WHERE alert) "
                              "FROM drift_reports WHERE station_id = ANY(%s)",
                              (first.stations,)).fetchone()
    assert first.drift_reports > 0 and stored == (first.drift_reports, 0), first.drift_alerts
    page = Path(first.report_page)
    assert page.name == "index.html" and len(list(page.parent.glob("*.png"))) >= 8
    assert "demo-01" in page.read_text()
    # The clip keeper kept the audio of the confident detections, playable and recorded.
    with psycopg.connect(database_url(settings, "reader")) as conn:
        clips = conn.execute("SELECT path, bytes FROM clips "
                             "WHERE station_id = ANY(%s)", (first.stations,)).fetchall()
    assert first.clips_kept == len(clips) > 0
    root = clips_dir(settings)
    assert all((root / path).stat().st_size == size for path, size in clips)
    assert all((root / path).read_bytes()[:4] == b"fLaC" for path, _ in clips)

    second = run_demo(settings, stations=2, minutes=1, progress=False, timeout_s=300)
    assert datetime.fromisoformat(second.period[0]) >= datetime.fromisoformat(first.period[1])
    assert (second.chunks_stored, second.dead_lettered) == (second.chunks_expected, 0)
    assert second.accuracy["f1"] >= 0.8, second.accuracy
    with psycopg.connect(database_url(settings, "reader")) as conn:
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert chunks == first.chunks_expected + second.chunks_expected
