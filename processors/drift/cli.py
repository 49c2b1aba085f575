"""`soundscape drift ...`: the streaming drift checks, the batch checks, their thresholds.

Registered in app/cli.py. Settings come from the shared App object at run time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from soundscape.cli_time import TIME
from soundscape.errors import UserError
from soundscape.drift_checks import CHECKS
from soundscape.cli_context import current_app, current_settings, database_errors


@click.group()
def drift() -> None:
    """Drift checks: has a station's input, or the model's output on it, changed?

    Per station and window (tumbling, or hopping when SOUNDSCAPE_DRIFT__HOP_S is smaller
    than __WINDOW_S), the window is compared with a reference (the previous windows, or
    a pinned baseline period): input levels, noise floor, clipping, silence, spectral
    centroid; the distributions of top labels and of confidence; gaps and silent
    stations. Reports go to soundscape.drift.v1 and, through the sink, to drift_reports.
    `soundscape drift thresholds` lists every check.
    """


@drift.command("run")
def drift_run() -> None:
    """Run the streaming checks over the detections topic until SIGTERM / Ctrl-C.

    A faust-streaming app: workers with the same SOUNDSCAPE_DRIFT__APP_ID share the
    partitions; state is kept in RocksDB under SOUNDSCAPE_DRIFT__DATA_DIR and in Kafka
    changelogs. Windows close by event time (chunk_start), so replayed archives are
    checked like live data. SOUNDSCAPE_METRICS_PORT serves /metrics and /healthz.
    """
    from soundscape.processors.drift import stream

    settings = current_settings("drift")
    baseline = None
    if settings.drift.reference == "baseline":
        from soundscape.processors.drift.batch import DatabaseBaseline

        baseline = DatabaseBaseline(settings)
    stream.run(settings, baseline)


@drift.command("check")
@click.option("--station", "stations", multiple=True,
              help="Station to check (repeat for more); default: every station with data.")
@click.option("--since", type=TIME, required=True,
              help="Start: ISO time (UTC unless it says), `now`, or a duration ago (7d).")
@click.option("--until", type=TIME, default="now", show_default=True,
              help="End (exclusive), same forms.")
@click.option("--alerts", "alerts_only", is_flag=True, help="Print only the alerting reports.")
@click.option("--store", is_flag=True,
              help="Write the reports to drift_reports (the sink's writer; idempotent).")
@click.option("--publish", is_flag=True,
              help="Publish the reports to the drift topic (the sink stores them).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON lines.")
def drift_check(stations: tuple[str, ...], since: datetime, until: datetime, alerts_only: bool,
                store: bool, publish: bool, as_json: bool) -> None:
    """Run the same checks over the chunks stored in PostgreSQL (backfills, reports).

    Windows starting in [--since, --until) are checked with the settings of the stream
    (window, hop, reference, thresholds). Exit status 1 when any report alerts.
    """
    from tqdm import tqdm

    from soundscape.processors.drift import batch

    if until <= since:
        raise UserError(f"--until {until:%Y-%m-%d %H:%M} is not after --since {since:%Y-%m-%d %H:%M}",
                        hint="give an earlier --since or a later --until")
    settings = current_settings()
    with database_errors():
        reports = batch.check(
            settings, since, until, list(stations) or None,
            progress=lambda items: tqdm(items, desc="stations", unit="station", disable=as_json),
        )
    if stations and not reports:
        click.echo(f"no data for {', '.join(stations)} in the range", err=True)
    if store:
        batch.store(current_app().open_result_sink("soundscape-drift-check"), reports)
    if publish:
        from soundscape.processors.drift.publish import publish as send

        send(settings, settings.topics.drift, reports)
    shown = [r for r in reports if r.alert or not alerts_only]
    if as_json:
        for report in shown:
            click.echo(report.model_dump_json())
    else:
        _print_table(shown)
        alerts = sum(r.alert for r in reports)
        click.echo(f"{len(reports)} reports, {alerts} alerting"
                   + (", stored" if store else "") + (", published" if publish else ""))
    if any(r.alert for r in reports):
        raise SystemExit(1)


@drift.command("thresholds")
@click.option("--json", "as_json", is_flag=True)
def drift_thresholds(as_json: bool) -> None:
    """List every check: its kind, its threshold (from the settings) and what it measures."""
    drift_settings = current_settings().drift
    rows = [{"check": name, "kind": kind, "threshold": getattr(drift_settings, setting),
             "setting": f"SOUNDSCAPE_DRIFT__{setting.upper()}", "value": meaning}
            for name, (kind, setting, meaning) in CHECKS.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['check']:18} {row['kind']:10} > {row['threshold']:<8} "
                   f"{row['value']} ({row['setting']})")
    click.echo(f"\nwindows: {drift_settings.window_s} s every {drift_settings.hop_s} s; "
               f"reference: {drift_settings.reference}; distribution changes must also be "
               f"significant at alpha={drift_settings.alpha}")


def _print_table(reports: list[Any]) -> None:
    from soundscape.processors.drift.station import iso

    for r in sorted(reports, key=lambda r: (r.station_id, r.window_start, r.check)):
        flag = "ALERT" if r.alert else "ok"
        click.echo(f"{r.station_id:16} {iso(r.window_start)[:16]} {r.check:18} "
                   f"{r.value:>10.4g} / {r.threshold:<8.4g} {flag:5} {r.detail}")



@click.command("drift")
@click.option("--chunks", default=30_000, show_default=True, type=click.IntRange(100),
              help="Detection messages in the backlog.")
@click.option("--stations", default=20, show_default=True, type=click.IntRange(1),
              help="Stations they come from (each gets chunks/stations in a row).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_drift(chunks: int, stations: int, as_json: bool) -> None:
    """Chunks/s of the drift checks: the logic alone, and `drift run` end to end.

    Uses the configured broker (scratch topics, removed afterwards) and the drift
    settings (window, hop, reference). Stations one worker follows = chunks/s x 10.
    """
    from soundscape.processors.drift.bench import run_drift_bench

    figures = run_drift_bench(current_settings(), chunks, stations, progress=not as_json)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        click.echo(f"{key:>40}: {value}")
