"""`soundscape clips run | status`: the clip keeper and what it holds."""

from __future__ import annotations

import click

from soundscape.cli_context import current_settings, database_errors, echo_json


@click.group("clips")
def clips() -> None:
    """Audio of chunks worth listening to (a detection at least clips.min_confidence, and
    a small sample of chunks without one), kept after the audio topic drops it."""


@clips.command("run")
@click.option("--group-id", default=None, help="Kafka consumer group [SOUNDSCAPE_CLIPS__GROUP_ID].")
@click.option("--metrics-port", type=int, default=None,
              help="Port of /metrics and /healthz [SOUNDSCAPE_METRICS_PORT]; 0 turns them off.")
def clips_run(group_id: str | None, metrics_port: int | None) -> None:
    """Keep clips: read results, fetch each chosen chunk's audio from the audio topic by
    its offset, write it under clips.dir (<state_dir>/clips), record it in PostgreSQL.

    Runs until SIGTERM or Ctrl-C. Offsets are committed after the files and rows are
    stored, so a crash repeats work and loses none. Past clips.max_bytes the oldest
    unreviewed clips are evicted. The audio topic's retention (topics.retention_hours)
    is how far behind it may fall."""
    from soundscape.service_runner import run_service
    from soundscape.sinks.clip_keeper import ClipKeeper

    settings = current_settings("clips")
    keeper = ClipKeeper(settings, group_id=group_id)
    stats = run_service(keeper, metrics_host=settings.metrics_host,
                        metrics_port=settings.metrics_port if metrics_port is None else metrics_port)
    click.echo(f"clip keeper stopped: {stats.kept} kept, {stats.expired} expired, "
               f"{stats.evicted} evicted", err=True)


@clips.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def clips_status(as_json: bool) -> None:
    """How many clips are kept, their size against the quota, how many were evicted."""
    from soundscape.sinks.clip_files import clips_dir
    from soundscape.sinks.connection import connect_to_table

    settings = current_settings()
    with database_errors(), connect_to_table(settings, "clips table") as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE evicted_at IS NULL),"
            " coalesce(sum(bytes) FILTER (WHERE evicted_at IS NULL), 0),"
            " count(*) FILTER (WHERE evicted_at IS NOT NULL),"
            " count(*) FILTER (WHERE evicted_at IS NULL AND reason = 'negative'),"
            " min(chunk_start) FILTER (WHERE evicted_at IS NULL) FROM clips").fetchone()
    assert row is not None
    report = {"folder": str(clips_dir(settings)), "clips": row[0], "bytes": int(row[1]),
              "quota_bytes": settings.clips.max_bytes, "evicted": row[2], "negatives": row[3],
              "oldest": row[4].isoformat() if row[4] else None}
    if as_json:
        echo_json(report)
        return
    share = 100 * report["bytes"] / report["quota_bytes"]
    click.echo(f"{report['clips']} clips ({report['negatives']} negatives), "
               f"{report['bytes'] / 1e6:.1f} MB of {report['quota_bytes'] / 1e6:.0f} MB "
               f"({share:.1f} %), {report['evicted']} evicted; in {report['folder']}")
    if report["oldest"]:
        click.echo(f"oldest recording kept: {report['oldest']}")
