"""`soundscape reviews export`: what people verified, as training data."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import click

from soundscape.cli_context import current_settings, database_errors, echo_json


@click.group("reviews")
def reviews() -> None:
    """Reviews people made in the web app (confirm, reject, relabel)."""


@reviews.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Manifest CSV to write ('-' for standard output).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only reviews made from then on (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def reviews_export(out: Path, since: datetime | None, as_json: bool) -> None:
    """Write the reviewed clips as a labelled manifest: path, start, end, labels, station,
    recording (station and day, the group for splits), chunk_id, reviewers, reviewed_at.
    Confirmed labels are kept, relabelled ones replaced, rejected ones dropped; a chunk
    whose every reviewed detection was rejected is a checked negative (no label)."""
    from soundscape.sinks.connection import connect_to_table
    from soundscape.sinks.review_manifest import export

    settings = current_settings()
    with database_errors(), connect_to_table(settings, "reviews table") as conn:
        if str(out) == "-":
            report = export(settings, conn, sys.stdout, since)
        else:
            temporary = out.with_name(f".{out.name}.tmp")
            with temporary.open("w", newline="") as handle:
                report = export(settings, conn, handle, since)
            os.replace(temporary, out)
    summary = {"out": str(out), **report.__dict__}
    if as_json:
        echo_json(summary)
    elif str(out) != "-":
        click.echo(f"{report.rows} reviewed clips ({report.labelled} labelled, "
                   f"{report.negatives} checked negatives) written to {out}"
                   + (f"; {report.missing_files} clip files missing" if report.missing_files
                      else ""))
