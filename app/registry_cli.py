"""`soundscape models register | list | promote | rollback | history | compare`: the bundle
registry the sink stores results by, and the rollout of its versions to the workers."""

from __future__ import annotations

from pathlib import Path

import click

from soundscape.cli_context import current_settings, database_errors, echo_json
from soundscape.cli_time import TIME


@click.command("register")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (prints its version).")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Copy the bundle into the bundle store (models.store_dir, by content hash) "
                   "and record that copy; --no-store records the folder as it is.")
def register_cmd(bundle: Path | None, as_json: bool, store: bool) -> None:
    """Vouch for BUNDLE (a bundle folder, or the name of one `models import` made, e.g.
    birdnet-v2.4) [default: the bundle `soundscape worker` would run]: its files are
    checked against its manifest, and its version, hashes, labels and location go into
    the results database's `models` table. The sink stores results of registered
    versions only (`sink.bundles`): register a bundle before its workers start, or their
    results go to the dead-letter topic.

    The files are copied into the bundle store under their content hash, so the version
    keeps naming the same files whatever happens to BUNDLE later; `models promote` then
    rolls it out to workers that follow the registry."""
    from soundscape.app.bundle_registration import register
    from soundscape.app.worker_cli import resolve_bundle

    settings = current_settings()
    with database_errors():
        record, new = register(settings, resolve_bundle(settings, bundle), store=store)
    if as_json:
        echo_json({"version": record.version, "new": new, "location": record.location,
                   "labels": len(record.labels), "content_hash": record.content_hash})
        return
    click.echo(f"bundle {record.version}: {'registered' if new else 'already registered'} "
               f"({len(record.labels)} labels, stored at {record.location})")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def list_cmd(as_json: bool) -> None:
    """Bundle versions known to the results database: registered ones, and any that
    produced results before registration existed (registered by `db upgrade`). The
    active version (the last promoted or rolled back to) is marked; with --json, by
    `"active": true`."""
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
        mark = "*" if row["active"] else " "
        click.echo(f"{mark} {row['version']:<40} {registered:<26} last used {used:<26} "
                   f"{row['location'] or ''}")
    if any(row["active"] for row in rows):
        click.echo("* active: run by workers that follow the registry (`worker --follow`)")


def _actor(by: str | None) -> str:
    import getpass
    import socket

    if by:
        return by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


_BY = click.option("--by", help="Who does it, for the record [default: user@host].")
_REASON = click.option("--reason", help="Why, for the record.")


@click.command("promote")
@click.argument("version")
@_BY
@_REASON
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def promote_cmd(version: str, by: str | None, reason: str | None, as_json: bool) -> None:
    """Make the registered VERSION the active bundle. Workers that follow the registry
    (`worker --follow`) load it, check it, and switch between batches, with no restart:
    a batch is scored by one bundle, and every result names its version. A worker that
    cannot load it keeps its bundle and says so (log, /healthz, metrics).
    `models rollback` goes back."""
    from soundscape.sinks.bundle_registry import promote

    with database_errors():
        done = promote(current_settings(), version, _actor(by), reason)
    _report("promoted", done, as_json)


@click.command("rollback")
@_BY
@_REASON
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def rollback_cmd(by: str | None, reason: str | None, as_json: bool) -> None:
    """Make the version that was active before the last promote active again; workers
    that follow the registry switch back between batches. Twice goes two promotions
    back."""
    from soundscape.sinks.bundle_registry import rollback

    with database_errors():
        done = rollback(current_settings(), _actor(by), reason)
    _report("rolled back to", done, as_json)


def _report(verb: str, done: object, as_json: bool) -> None:
    from soundscape.sinks.bundle_registry import Promotion

    assert isinstance(done, Promotion)
    if as_json:
        echo_json({"active": done.version, "previous": done.previous, "changed": done.changed})
    elif not done.changed:
        click.echo(f"{done.version} is already the active version; nothing changed")
    else:
        click.echo(f"{verb} {done.version} (was {done.previous or 'none'}); workers that follow "
                   f"the registry switch within worker.registry_poll_s")


@click.command("history")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def history_cmd(limit: int, as_json: bool) -> None:
    """Promotions and rollbacks, newest first: who made which version active, when, why."""
    from soundscape.sinks.bundle_registry import promotion_history

    with database_errors():
        rows = promotion_history(current_settings(), limit)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no version was ever promoted")
    for row in rows:
        click.echo(f"{row['at'].isoformat(timespec='seconds')}  {row['action']:<8} "
                   f"{row['version']} (was {row['previous'] or 'none'}) by {row['by']}"
                   + (f": {row['reason']}" if row["reason"] else ""))


@click.command("compare")
@click.argument("live")
@click.argument("candidate")
@click.option("--since", type=TIME, default="24h", show_default=True,
              help="From this chunk time: ISO 8601 or a duration back (6h, 7d).")
@click.option("--until", type=TIME, default="now", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def compare_cmd(live: str, candidate: str, since: object, until: object, as_json: bool) -> None:
    """Compare two versions on the chunks both scored: LIVE from the live tables, a
    CANDIDATE from its shadow results (`worker --shadow`), either from whichever holds
    it. Agreement of top labels and detected sets, per-species count shifts, and
    precision of each on chunks people reviewed in the web app."""
    from datetime import datetime

    from soundscape.sinks.model_compare import compare

    assert isinstance(since, datetime) and isinstance(until, datetime)
    with database_errors():
        figures = compare(current_settings(), live, candidate, since, until)
    if as_json:
        echo_json(figures)
        return
    chunks, agree, reviewed = figures["chunks"], figures["agreement"], figures["reviewed"]
    click.echo(f"{live} vs {candidate}: {chunks['both']} chunks scored by both "
               f"({chunks['live']} and {chunks['candidate']} each)")
    click.echo(f"  same top label {_pct(agree['top_label'])}, same detected set "
               f"{_pct(agree['detected_set'])}")
    click.echo(f"  reviewed chunks {reviewed['chunks']}: precision live "
               f"{_pct(reviewed['live']['precision'])} ({reviewed['live']['right']} right, "
               f"{reviewed['live']['wrong']} wrong), candidate "
               f"{_pct(reviewed['candidate']['precision'])} ({reviewed['candidate']['right']} "
               f"right, {reviewed['candidate']['wrong']} wrong)")
    click.echo(f"  species whose count changed: {figures['species_changed']}")
    for row in figures["species_shifts"]:
        if row["shift"]:
            click.echo(f"    {row['label']:<40} {row['live']:>7} -> {row['candidate']:<7} "
                       f"({row['shift']:+d})")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
