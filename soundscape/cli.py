"""The `soundscape` command: one entry point for every service and tool."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from soundscape import __version__
from soundscape.errors import UserError
from soundscape.logs import configure_logging
from soundscape.settings import Settings, load_settings


class App:
    """Settings are built lazily, so `--help` works even with a broken configuration."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            configure_logging(self._settings.log_level, self._settings.log_format)
        return self._settings


pass_ctx = click.make_pass_decorator(App, ensure=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


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
@pass_ctx
def config_show(ctx: App, as_json: bool) -> None:
    """Print the effective settings, secrets masked, with where they came from."""
    data = ctx.settings.masked()
    if as_json:
        _print_json(data)
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
@pass_ctx
def infra_up(ctx: App, kafka: bool, postgres: bool) -> None:
    """Start the services that are not running (idempotent) and create the topics."""
    from soundscape.infra import stack

    report = stack.up(ctx.settings, kafka=kafka, postgres=postgres)
    for name, info in report.items():
        if name == "topics":
            click.echo(f"topics:   {len(info['topics'])} ready in {info['seconds']:.2f} s")
            continue
        extra = ""
        if info.get("jar_fetch_seconds"):
            extra = f" (jars fetched from Maven Central in {info['jar_fetch_seconds']:.1f} s)"
        click.echo(f"{name + ':':9} {info['action']} in {info['seconds']:.2f} s{extra}")
    status = stack.status(ctx.settings)
    click.echo(f"kafka    bootstrap: {status['bootstrap_servers']}")
    click.echo(f"database url:       {_mask_url(status['database_url'])}")


@infra.command("down")
@pass_ctx
def infra_down(ctx: App) -> None:
    """Stop both services; no process or lock is left behind."""
    from soundscape.infra import stack

    for name, was_running in stack.down(ctx.settings).items():
        click.echo(f"{name}: {'stopped' if was_running else 'was not running'}")


@infra.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, with the full URLs.")
@pass_ctx
def infra_status(ctx: App, as_json: bool) -> None:
    """Tell what runs where; `--json` gives scripts the bootstrap address and database URL.

    Exit status: 0 when every local service runs, 1 otherwise.
    """
    from soundscape.infra import stack

    status = stack.status(ctx.settings)
    if as_json:
        _print_json(status)
    else:
        for name in ("kafka", "postgres"):
            info = status[name]
            if info.get("external"):
                click.echo(f"{name}: external")
                continue
            state = f"running (pid {info['pid']})" if info["running"] else "stopped"
            click.echo(f"{name}: {state}; log {info['log']}")
        click.echo(f"bootstrap_servers: {status['bootstrap_servers']}")
        click.echo(f"database_url: {_mask_url(status['database_url'])}")
    local_down = [
        n for n in ("kafka", "postgres")
        if not status[n].get("external") and not status[n].get("running")
    ]
    sys.exit(1 if local_down else 0)


@infra.command("reset")
@click.option("--kafka", "only_kafka", is_flag=True, help="Wipe only the broker's state.")
@click.option("--postgres", "only_postgres", is_flag=True, help="Wipe only the database.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def infra_reset(ctx: App, only_kafka: bool, only_postgres: bool, yes: bool) -> None:
    """Stop and DELETE the local services' data (all topics, all rows). Jars stay cached."""
    from soundscape.infra import stack

    both = not (only_kafka or only_postgres)
    if not yes:
        click.confirm(f"Delete the service data under {ctx.settings.state_dir}?", abort=True)
    for path in stack.reset(ctx.settings, kafka=both or only_kafka, postgres=both or only_postgres):
        click.echo(f"wiped {path}")


@infra.command("topics")
@pass_ctx
def infra_topics(ctx: App) -> None:
    """Create or update the topics on the configured cluster (local or external)."""
    from soundscape.infra.kafka.topics import ensure_topics

    for name, outcome in ensure_topics(ctx.settings).items():
        click.echo(f"{name}: {outcome}")


# ---- demo and benchmarks ------------------------------------------------------------------
@cli.command()
@click.option("--chunks", default=120, show_default=True, help="Chunks to generate.")
@click.option("--stations", default=4, show_default=True, help="Stations to spread them over.")
@pass_ctx
def demo(ctx: App, chunks: int, stations: int) -> None:
    """The main job, end to end: services up, chunks through Kafka and back, a summary."""
    from soundscape.infra import stack
    from soundscape.roundtrip import run_roundtrip

    if chunks < 1 or stations < 1:
        raise click.BadParameter("--chunks and --stations must be at least 1")
    click.echo("== services")
    click.get_current_context().invoke(infra_up)
    click.echo(f"\n== {chunks} generated chunks from {stations} stations through Kafka")
    result = run_roundtrip(ctx.settings, chunks, stations, progress=True)
    summary = result.summary()
    for key, value in summary.items():
        click.echo(f"{key:>14}: {value}")
    if result.mismatches():
        raise UserError(
            f"{len(result.mismatches())} chunks did not come back intact: "
            + "; ".join(result.mismatches()[:5])
        )
    click.echo("\nall chunks came back byte-identical with their headers")


@cli.group()
def bench() -> None:
    """Benchmarks that print figures (add --json for machine-readable output)."""


@bench.command("kafka")
@click.option("--chunks", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def bench_kafka(ctx: App, chunks: int, as_json: bool) -> None:
    """Publish and read back N ~400 KB FLAC chunks through the broker; MB/s both ways."""
    from soundscape.roundtrip import run_roundtrip

    summary = run_roundtrip(ctx.settings, chunks, progress=not as_json).summary()
    if as_json:
        _print_json(summary)
    else:
        for key, value in summary.items():
            click.echo(f"{key:>14}: {value}")


# ---- commands that live in their rooms ----------------------------------------------------
from soundscape.infra.grafana.cli import grafana, report  # noqa: E402
from soundscape.infra.images.cli import images  # noqa: E402
from soundscape.models.frontend.cli import frontend as frontend_group  # noqa: E402
from soundscape.processors.drift.cli import bench_drift, drift  # noqa: E402
from soundscape.producers.cli import bench_station, replay, station  # noqa: E402
from soundscape.sinks.cli import bench_sink, db, sink  # noqa: E402
from soundscape.synth_cli import synth as synth_group  # noqa: E402

cli.add_command(images)
cli.add_command(station)
cli.add_command(replay)
bench.add_command(bench_station)
cli.add_command(frontend_group)
cli.add_command(synth_group)
cli.add_command(db)
cli.add_command(sink)
bench.add_command(bench_sink)
cli.add_command(drift)
bench.add_command(bench_drift)
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
