"""Commands of the sinks room: `soundscape db ...`, `soundscape sink`, `soundscape bench sink`.

Registered in app/cli.py. Settings come from the shared App object at run time
(imported lazily, so this module imports cleanly on its own).
"""

from __future__ import annotations

from typing import Any

import click

from soundscape.cli_context import current_settings, database_errors, echo_json
from soundscape.stall_dump import StallDump

#: Seconds a turn of the sink's loop may take before every thread's stack is logged.
STALL_DUMP_S = 120.0




# ---- db -----------------------------------------------------------------------------------
@click.group()
def db() -> None:
    """Schema migrations and partition maintenance of the results database.

    Migrations ship inside the package and run as the writer role
    (SOUNDSCAPE_POSTGRES__WRITER_USER); the reader role gets SELECT on everything.
    """


@db.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL instead of running it.")
def db_upgrade(revision: str, as_sql: bool) -> None:
    """Migrate the schema to REVISION (default: the newest), then create partitions ahead.

    Safe to run again: an up-to-date database is left as it is.
    """
    from soundscape.sinks import migrate
    from soundscape.sinks.writer import ResultWriter

    if as_sql:
        click.echo(migrate.upgrade_sql(revision))
        return
    settings = current_settings()
    with database_errors():
        before = migrate.schema_status(settings).current
        status = migrate.upgrade(settings, revision)
        click.echo(f"schema at {status.current} (newest {status.head}); was {before or 'empty'}")
        if status.up_to_date:
            writer = ResultWriter(settings, application_name="soundscape-db", role="owner")
            try:
                report = writer.maintain()
            finally:
                writer.close()
            click.echo(f"partitions created: {len(report.created)}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate the schema back to REVISION: `-1` (default) one step, `base` everything.

    A downgrade that drops tables drops their data with them.
    """
    from soundscape.sinks import migrate

    settings = current_settings()
    if not yes:
        click.confirm(
            f"Downgrade the database {settings.postgres.database} to {revision}? "
            "Tables the downgrade drops lose their data", abort=True,
        )
    with database_errors():
        before = migrate.schema_status(settings).current
        status = migrate.downgrade(settings, revision)
    click.echo(f"schema at {status.current or 'base (empty)'} (newest {status.head}); "
               f"was {before or 'empty'}")


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def db_status(as_json: bool) -> None:
    """Schema revision, pending migrations, and the partitions of each time-series table.

    Exit status 1 when migrations are pending.
    """
    from soundscape.sinks import migrate
    from soundscape.sinks.connection import connect
    from soundscape.sinks.partitions import PartitionManager

    settings = current_settings()
    with database_errors():
        status = migrate.schema_status(settings)
        partitions: dict[str, Any] = {}
        if status.current is not None:
            with connect(settings, application_name="soundscape-db") as conn:
                for table, parts in PartitionManager(settings).catalogue(conn).items():
                    spans = sorted(p.span for p, _ in parts)
                    partitions[table] = {
                        "count": len(parts),
                        "from": spans[0].lower.isoformat() if spans else None,
                        "to": spans[-1].upper.isoformat() if spans else None,
                    }
    sink = settings.sink
    report = status.as_dict() | {
        "partitions": partitions,
        "partition_interval": sink.partition_interval,
        "partitions_ahead": sink.partitions_ahead,
        "retention_days": sink.retention_days or None,
    }
    if as_json:
        echo_json(report)
    else:
        state = "up to date" if status.up_to_date else f"pending: {', '.join(status.pending)}"
        click.echo(f"schema: {status.current or 'empty'} (newest {status.head}), {state}")
        for table, info in partitions.items():
            click.echo(f"  {table:20} {info['count']:4} partitions  {info['from']} .. {info['to']}")
        retention = f"{sink.retention_days} days" if sink.retention_days else "keep everything"
        click.echo(f"partitions: one per {sink.partition_interval}, {sink.partitions_ahead} ahead; "
                   f"retention: {retention}")
    raise SystemExit(0 if status.up_to_date else 1)


@db.command("maintain")
@click.option("--dry-run", is_flag=True, help="Only say what would be created and dropped.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def db_maintain(dry_run: bool, as_json: bool) -> None:
    """Create the partitions ahead and drop those past retention (SOUNDSCAPE_SINK__RETENTION_DAYS).

    Runs as the database's owner role. The sink creates partitions ahead at start and
    every SOUNDSCAPE_SINK__MAINTENANCE_INTERVAL_S, but its writer role may not drop
    anything: with a retention set, run this daily (systemd timer, cron).
    """
    from soundscape.sinks.writer import ResultWriter

    settings = current_settings()
    writer = ResultWriter(settings, application_name="soundscape-db", role="owner")
    with database_errors():
        try:
            report = writer.maintain(dry_run=dry_run)
        finally:
            writer.close()
    if as_json:
        echo_json(report.as_dict() | {"dry_run": dry_run})
        return
    verb = "would be " if dry_run else ""
    click.echo(f"{verb}created: {', '.join(report.created) or 'none'}")
    click.echo(f"{verb}dropped: {', '.join(report.dropped) or 'none'}"
               + ("" if report.horizon else " (no retention configured)"))


# ---- the service --------------------------------------------------------------------------
@click.command("sink")
@click.option("--group-id", default=None, help="Kafka consumer group [SOUNDSCAPE_SINK__GROUP_ID].")
@click.option("--metrics-port", type=int, default=None,
              help="Port of /metrics and /healthz [SOUNDSCAPE_METRICS_PORT]; 0 turns them off.")
@click.option("--shadow", is_flag=True,
              help="Store the results of candidate bundles (`worker --shadow VERSION`) in "
                   "shadow_results instead, apart from the live tables.")
@click.option("--edge", is_flag=True,
              help="Store the results stations scored themselves (station.edge_bundle) in "
                   "edge_results instead, apart from the live tables; a result must be its "
                   "station's own and signed as intake.signatures says for chunks.")
def sink(group_id: str | None, metrics_port: int | None, shadow: bool, edge: bool) -> None:
    """Store detections, heartbeats and drift reports from Kafka in PostgreSQL.

    Runs until SIGTERM or Ctrl-C, then finishes the batch in hand and commits it. Offsets
    are committed only after the database commit; while the database is down, consumption
    pauses and the batch is retried with backoff. Unparseable messages go to the
    dead-letter topic (SOUNDSCAPE_TOPICS__RESULTS_DLQ). Start more sinks with the same
    group to share the partitions.
    """
    from soundscape.service_runner import run_service
    from soundscape.sinks.service import SinkService, tune_gc

    settings = current_settings("sink")
    tune_gc()
    if shadow and edge:
        raise click.UsageError("--shadow and --edge are two sinks: run one of each")
    if shadow or edge:
        from soundscape.sinks.shadow_writer import EdgeWriter, ShadowWriter

        if group_id:
            settings = settings.model_copy(
                update={"sink": settings.sink.model_copy(update={"group_id": group_id})})
        writer = EdgeWriter(settings) if edge else ShadowWriter(settings)
        done = run_service(writer, metrics_host=settings.metrics_host,
                           metrics_port=settings.metrics_port if metrics_port is None
                           else metrics_port)
        refused = done.malformed + done.unregistered + done.refused
        click.echo(f"{writer.kind.name} sink stopped: {done.stored} stored, {done.duplicates} "
                   f"duplicates skipped, {refused} refused", err=True)
        return
    service = SinkService(settings, group_id=group_id)
    # A loop turn is milliseconds (a database outage loops too): two minutes is a stall.
    service.stall_dump = StallDump(STALL_DUMP_S)
    stats = run_service(service, metrics_host=settings.metrics_host,
                        metrics_port=settings.metrics_port if metrics_port is None else metrics_port)
    click.echo(f"sink stopped: {stats.stored} stored, {stats.duplicates} duplicates skipped, "
               f"{stats.dead_lettered} dead-lettered", err=True)


@click.command("sink")
@click.option("--results", default=100_000, show_default=True, help="Results to write.")
@click.option("--detections", default=3, show_default=True, help="Detection rows per result.")
@click.option("--stations", default=50, show_default=True, help="Stations the results come from.")
@click.option("--batch-size", type=int, default=None,
              help="Results per transaction [SOUNDSCAPE_SINK__BATCH_SIZE].")
@click.option("--sinks", "sink_counts", default=None, metavar="N[,N...]",
              help="Instead: drain a backlog with each number of sink processes in one "
                   "consumer group (e.g. 1,2), one round each, and compare their rates.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_sink(results: int, detections: int, stations: int, batch_size: int | None,
               sink_counts: str | None, as_json: bool) -> None:
    """Results/s into PostgreSQL: the writer alone, and the sink service end to end;
    with --sinks, one sink process against several in one group.

    Uses a scratch schema and scratch topics (removed afterwards); needs `infra up`.
    """
    from soundscape.sinks.bench import run_sink_bench
    from soundscape.sinks.bench_parallel import run_parallel_bench
    from soundscape.sinks.service import tune_gc

    if results < 1 or detections < 0 or stations < 1 or (batch_size is not None and batch_size < 1):
        raise click.BadParameter("--results, --stations, --batch-size >= 1; --detections >= 0")
    counts = _sink_counts(sink_counts) if sink_counts is not None else None
    settings = current_settings()
    tune_gc()
    with database_errors():
        if counts is not None:
            figures = run_parallel_bench(settings, counts, results, detections, stations,
                                         batch_size, progress=not as_json)
        else:
            figures = run_sink_bench(settings, results, detections, stations, batch_size,
                                     progress=not as_json)
    if as_json:
        echo_json(figures)
    else:
        for key, value in figures.items():
            click.echo(f"{key:>30}: {value}")


def _sink_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or n > 16 for n in counts):
        raise click.BadParameter(f"{text!r}: sink counts between 1 and 16, comma-separated, "
                                 "e.g. 1,2", param_hint="--sinks")
    return counts
