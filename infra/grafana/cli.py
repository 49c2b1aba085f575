"""`soundscape grafana ...` and `soundscape report`: dashboards on a Grafana, or without one.

Registered in app/cli.py. Settings come from the shared App object at run time.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from soundscape.cli_time import TIME
from soundscape.errors import UserError
from soundscape.cli_context import current_settings, database_errors



@click.group()
def grafana() -> None:
    """Grafana dashboards: overview, station health, pipeline, model and drift.

    Provisioning files for docker-compose are in infra/grafana (compose.yaml,
    provisioning/, dashboards/); `grafana push` puts the same datasource and dashboards
    on any running Grafana through its HTTP API. Without a Grafana: `soundscape report`.
    """


@grafana.command("push")
@click.option("--url", help="Grafana's base URL, e.g. http://grafana:3000 "
                            "(default: SOUNDSCAPE_GRAFANA__URL).")
@click.option("--token", help="A service account token with the Admin role "
                              "(default: SOUNDSCAPE_GRAFANA__TOKEN).")
@click.option("--dry-run", is_flag=True, help="Print the payloads instead of sending them "
                                              "(the datasource password masked).")
def grafana_push(url: str | None, token: str | None, dry_run: bool) -> None:
    """Create or update the datasource(s), the folder and the four dashboards.

    The PostgreSQL datasource uses the read-only role (SOUNDSCAPE_POSTGRES__READER_USER);
    set SOUNDSCAPE_GRAFANA__POSTGRES_ADDRESS when Grafana reaches the database at another
    address than this machine does, and SOUNDSCAPE_GRAFANA__PROMETHEUS_URL to add the
    Prometheus datasource and the dead-letter panels. Pushing again updates in place.
    """
    from soundscape.infra.grafana import push

    settings = current_settings()
    if dry_run:
        steps = push.plan(settings)
        for source in steps.datasources:
            source.get("secureJsonData", {}).update(
                {k: "***" for k in source.get("secureJsonData", {})})
        click.echo(json.dumps({"datasources": steps.datasources, "folder": steps.folder,
                               "dashboards": steps.dashboards}, indent=2))
        return
    url = url or settings.grafana.url
    secret = token or (settings.grafana.token.get_secret_value()
                       if settings.grafana.token else None)
    if not url or not secret:
        raise UserError("grafana push needs a URL and a token",
                        hint="pass --url and --token, or set SOUNDSCAPE_GRAFANA__URL and "
                             "SOUNDSCAPE_GRAFANA__TOKEN")
    for line in push.push(settings, url, secret):
        click.echo(line)


@grafana.command("build")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the dashboard JSON files (default: infra/grafana/dashboards).")
def grafana_build(out: Path | None) -> None:
    """Write the dashboards as Grafana JSON (the files docker-compose provisions)."""
    from soundscape.infra.grafana.dashboard_model import DASHBOARDS_DIR, write_all

    for path in write_all(out or DASHBOARDS_DIR):
        click.echo(f"wrote {path}")


@grafana.command("env")
def grafana_env() -> None:
    """Print the variables compose.yaml reads (database address, read-only role, its
    password): `soundscape grafana env > infra/grafana/.env`."""
    from soundscape.infra.grafana.push import postgres_datasource

    source = postgres_datasource(current_settings())
    prometheus = current_settings().grafana.prometheus_url or "http://127.0.0.1:9090"
    for key, value in (("SOUNDSCAPE_PG_ADDRESS", source["url"]),
                       ("SOUNDSCAPE_PG_DATABASE", source["jsonData"]["database"]),
                       ("SOUNDSCAPE_PG_READER_USER", source["user"]),
                       ("SOUNDSCAPE_PG_READER_PASSWORD", source["secureJsonData"]["password"]),
                       ("SOUNDSCAPE_PG_SSLMODE", source["jsonData"]["sslmode"]),
                       ("SOUNDSCAPE_PROMETHEUS_URL", prometheus)):
        click.echo(f"{key}={value}")


@click.command("report")
@click.option("--since", type=TIME, required=True,
              help="Start: ISO time (UTC unless it says), or a duration ago (24h, 7d).")
@click.option("--until", type=TIME, default="now", show_default=True, help="End, same forms.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the PNG plots and index.html (made if missing).")
@click.option("--station", "stations", multiple=True,
              help="Only this station (repeat for more); default: all.")
def report(since: datetime, until: datetime, out: Path, stations: tuple[str, ...]) -> None:
    """Render the dashboards' main panels as PNG plots and a small HTML page.

    The same queries as the Grafana dashboards, for [--since, --until), read with the
    read-only role: detections by species, top species, the station map, station
    health and gaps, pipeline latency, confidence, noise floor and drift alerts.
    """
    from tqdm import tqdm

    from soundscape.infra.grafana.report import make

    if until <= since:
        raise UserError(f"--until {until:%Y-%m-%d %H:%M} is not after --since "
                        f"{since:%Y-%m-%d %H:%M}", hint="give an earlier --since")
    with database_errors():
        made = make(current_settings(), since, until, out, stations or None,
                    progress=lambda items: tqdm(items, desc="panels", unit="panel"))
    click.echo(f"{len(made.files) - 1} plots and {out / 'index.html'}")
