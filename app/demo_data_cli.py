"""`soundscape grafana demo-data`: wiring (drift scenarios and the sink's writer), so it
lives here and app/cli.py adds it to the `grafana` group."""

from __future__ import annotations

import json
from datetime import datetime

import click

from soundscape.cli_context import current_settings
from soundscape.cli_time import TIME


@click.command("demo-data")
@click.option("--hours", default=24, show_default=True, type=click.IntRange(1, 24 * 60),
              help="Length of the demo period, ending now (or at --end).")
@click.option("--end", type=TIME, default="now", show_default=True, help="End of the period.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def grafana_demo_data(hours: int, end: datetime, as_json: bool) -> None:
    """Fill the database with demo results from four stations (one with a noise floor
    rising 20 dB, one whose species change, one with an outage), with heartbeats and
    drift reports, through the sink's writer. Safe to run again (nothing is doubled).
    Run `soundscape db upgrade` first."""
    from tqdm import tqdm

    from soundscape.app import demo_data

    settings = current_settings()
    # The total counts every 10 s slot; the outage and the gaps leave some empty, so the
    # bar ends at the chunks really written.
    with tqdm(total=hours * 360 * len(demo_data.STATIONS), unit="chunk", desc="results",
              disable=as_json) as bar:
        summary = demo_data.fill(settings, end, hours, progress=bar.update)
        bar.total = bar.n
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    for key, value in summary.as_dict().items():
        click.echo(f"{key:>14}: {value}")
