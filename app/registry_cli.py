"""`soundscape models register | list`: the bundle registry the sink stores results by."""

from __future__ import annotations

from pathlib import Path

import click

from soundscape.cli_context import current_settings, database_errors, echo_json


@click.command("register")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (prints its version).")
def register_cmd(bundle: Path | None, as_json: bool) -> None:
    """Vouch for BUNDLE (a bundle folder, or the name of one `models import` made, e.g.
    birdnet-v2.4) [default: the bundle `soundscape worker` would run]: its files are
    checked against its manifest, and its version, hashes, labels and location go into
    the results database's `models` table. The sink stores results of registered
    versions only (`sink.bundles`): register a bundle before its workers start, or their
    results go to the dead-letter topic."""
    from soundscape.app.bundle_registration import register
    from soundscape.app.worker_cli import resolve_bundle

    settings = current_settings()
    with database_errors():
        record, new = register(settings, resolve_bundle(settings, bundle))
    if as_json:
        echo_json({"version": record.version, "new": new, "location": record.location,
                   "labels": len(record.labels)})
        return
    click.echo(f"bundle {record.version}: {'registered' if new else 'already registered'} "
               f"({len(record.labels)} labels, {record.location})")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def list_cmd(as_json: bool) -> None:
    """Bundle versions known to the results database: registered ones, and any that
    produced results before registration existed (registered by `db upgrade`)."""
    from soundscape.sinks.bundle_registry import list_bundles

    with database_errors():
        rows = list_bundles(current_settings())
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no bundle registered; `soundscape models register BUNDLE`")
        return
    for row in rows:
        registered = row["registered_at"].isoformat(timespec="seconds") \
            if row["registered_at"] else "NOT registered"
        used = row["last_used"].isoformat(timespec="seconds") if row["last_used"] else "never"
        click.echo(f"{row['version']:<40} {registered:<26} last used {used:<26} "
                   f"{row['location'] or ''}")
