"""`soundscape chaos`: a seeded fault run of the whole pipeline on a local cluster."""

from __future__ import annotations

import sys

import click

from soundscape.cli_context import App, echo_json, pass_app


@click.command("chaos")
@click.option("--chunks", default=2000, show_default=True, type=click.IntRange(8, 1_000_000),
              help="Chunks the stations record in all (10000 for the long run).")
@click.option("--stations", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--kills", default=20, show_default=True, type=click.IntRange(0, 1000),
              help="kill -9 of workers, sinks, the drift app and brokers (about a fifth "
                   "brokers, one at a time), at moments the seed picks.")
@click.option("--kinds", default="worker,sink,drift,broker", show_default=True,
              help="What the kills hit, comma-separated, among worker, sink, drift, broker.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same plan of faults.")
@click.option("--speed", default=20.0, show_default=True, type=click.FloatRange(0.5, 1000),
              help="Stations record at N x real time; more than the pipeline scores only "
                   "builds a backlog.")
@click.option("--postgres-outage", "postgres_outage_s", default=60.0, show_default=True,
              type=click.FloatRange(0, 3600), help="Seconds PostgreSQL is stopped (0: never).")
@click.option("--offline-minutes", default=10.0, show_default=True,
              type=click.FloatRange(0, 10_000),
              help="Minutes of its audio one station records with its uplink down (0: never).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--sinks", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--drain-timeout", "drain_timeout_s", default=600.0, show_default=True,
              type=click.FloatRange(10, 7200),
              help="Give up draining after this long without a new stored chunk.")
@click.option("--keep", is_flag=True,
              help="Keep the run's state folder (logs, data) even when nothing went wrong.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def chaos(ctx: App, chunks: int, stations: int, kills: int, kinds: str, seed: int, speed: float,
          postgres_outage_s: float, offline_minutes: float, workers: int, sinks: int,
          drain_timeout_s: float, keep: bool, as_json: bool) -> None:
    """Run the pipeline on three brokers under many faults at once, and count the damage.

    In a state folder of its own (its own ports; `infra up` services are not touched):
    a three-node KRaft cluster (replication 3, min.insync.replicas 2), PostgreSQL, WORKERS
    workers, SINKS sinks and the drift app as real processes, and STATIONS synthetic
    stations recording CHUNKS chunks in all. During the input, at seeded moments: kill -9
    of workers, sinks, the drift app and one broker at a time, each started again after
    a pause; PostgreSQL stopped for --postgres-outage s; one station offline for
    --offline-minutes of its audio (its spool must then drain in order).

    Then it waits for the pipeline to drain and prints chunks expected, stored,
    duplicated, missing, dead-lettered (with reasons), drift windows expected vs stored,
    faults by kind, each fault's recovery time (restart -> partitions, quorum or database
    back), and the time to drain. Exits 1 if anything was lost, duplicated or not
    recovered; the state folder is kept then, with every service's log.
    """
    from soundscape.app.chaos import ChaosOptions, ChaosRun
    from soundscape.app.chaos_plan import KILL_KINDS

    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
    if not chosen or set(chosen) - set(KILL_KINDS):
        raise click.BadParameter(f"{kinds!r}: choose among {', '.join(KILL_KINDS)}",
                                 param_hint="--kinds")
    options = ChaosOptions(chunks=chunks, stations=stations, kills=kills, kinds=chosen, seed=seed,
                           speed=speed, postgres_outage_s=postgres_outage_s,
                           offline_minutes=offline_minutes, workers=workers, sinks=sinks,
                           drain_timeout_s=drain_timeout_s, keep=keep)
    say = lambda line: click.echo(line, err=True)  # noqa: E731 - progress; stdout has the report
    report = ChaosRun(ctx.settings, options, say).run()
    if as_json:
        echo_json(report.as_dict())
    else:
        _print(report)
    sys.exit(0 if report.ok else 1)


def _print(report: object) -> None:
    data = report.as_dict()  # type: ignore[attr-defined]
    counts = data["counts"]
    click.echo(f"chunks: {counts['chunks_expected']} expected, {counts['stored']} stored, "
               f"{counts['missing']} missing, {counts['duplicated']} duplicated")
    dlq = data["dead_letters"]
    click.echo(f"dead-lettered: {dlq['count']} {dlq['reasons'] or ''}")
    drift = data["drift_windows"]
    click.echo(f"drift windows: {drift['expected']} expected, {drift['stored']} stored, "
               f"{drift['missing']} missing")
    click.echo("faults: " + ", ".join(f"{k} {v}" for k, v in data["faults_by_kind"].items()))
    for kind, summary in data["recovery_by_service"].items():
        click.echo(f"  {kind:<9} recovered {summary['recovered']}/{summary['faults']}, "
                   f"median {summary['median_s']} s, max {summary['max_s']} s; with no other "
                   f"fault in progress {summary['alone']}, max {summary['alone_max_s']} s"
                   + (f"; partitions back after serving: median {summary['rejoin_median_s']} s, "
                      f"max {summary['rejoin_max_s']} s" if "rejoin_max_s" in summary else ""))
    offline = data["offline_station"]
    click.echo(f"offline station {offline['station']}: {offline.get('spooled_while_offline')} "
               f"chunks spooled, drained in {offline.get('spool_drained_s')} s, in order: "
               f"{offline['in_order'] and offline['abutting']}")
    click.echo("seconds: " + ", ".join(f"{k} {v}" for k, v in data["seconds"].items()))
    if data["problems"]:
        click.echo("PROBLEMS:\n  " + "\n  ".join(data["problems"]))
        click.echo(f"logs and data kept in {data['state_dir']}")
    else:
        click.echo("nothing lost, nothing duplicated")
