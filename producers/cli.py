"""`soundscape station`, `soundscape replay` and `soundscape bench station`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from soundscape.envelope import STATION_ID_RE
from soundscape.errors import ServiceError, UserError
from soundscape.settings import Settings
from soundscape.cli_context import current_app, current_settings
from soundscape.service_runner import run_service



def _station_id(value: str | None) -> str:
    if not value:
        raise UserError("no station id given",
                        hint="pass --station ID or set SOUNDSCAPE_STATION__STATION_ID")
    if not STATION_ID_RE.fullmatch(value):
        raise UserError(f"station id {value!r} is not valid",
                        hint="use 1 to 64 lower-case letters, digits and '-', e.g. marsh-03")
    return value


def _echo_report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in value.items())
        click.echo(f"{key:>28}: {value}")


# ---- station --------------------------------------------------------------------------------
@click.command()
@click.option("--station", "station_id", help="Station id, e.g. marsh-03 [station.station_id].")
@click.option("--source", help="mic, synthetic, or a file / folder / glob of recordings "
              "(an SD card's) [station.source, default mic].")
@click.option("--device", help="PortAudio input device name or index; `python -m sounddevice` "
              "lists them [station.device, default input].")
@click.option("--capture-rate", type=int, help="Device rate in Hz; resampled to 32 kHz on the "
              "station [station.capture_rate; 0 tries 32, 48, 44.1 kHz].")
@click.option("--codec", type=click.Choice(["flac", "wav"]), help="Payload codec [flac].")
@click.option("--speed", type=float, help="synthetic and file sources: N x real time, 0 as fast "
              "as possible [synthetic 1, files 0].")
@click.option("--start", help="synthetic source: time of the first sample, ISO 8601 [now].")
@click.option("--chunks", "max_chunks", type=click.IntRange(min=1),
              help="Stop after this many chunks [run until stopped or the source ends].")
@click.option("--drain-timeout", type=float, default=20.0, show_default=True,
              help="Seconds to let the spool empty when stopping; what is left is sent by the "
              "next start.")
@click.option("--drain-only", is_flag=True, help="Capture nothing: send what the spool holds, "
              "then exit (fails if it cannot within --drain-timeout).")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
def station(station_id: str | None, source: str | None, device: str | None,
            capture_rate: int | None, codec: str | None, speed: float | None,
            start: str | None, max_chunks: int | None, drain_timeout: float,
            drain_only: bool, as_json: bool) -> None:
    """Run a field station: capture, cut gapless 10 s chunks, spool to disk, send to Kafka.

    Every chunk is on disk before it is sent and deleted only after Kafka acknowledged
    it, so broker outages, network cuts and reboots lose nothing. Heartbeats go to the
    heartbeats topic every station.heartbeat_interval_s; /metrics and /healthz are served
    on SOUNDSCAPE_METRICS_PORT. SIGTERM completes the current chunk, then stops.
    """
    from soundscape.producers.file_times import parse_start
    from soundscape.producers.sources import NoSource, open_source
    from soundscape.producers.station import Station
    from soundscape.producers.station_metrics import station_registry

    app = current_app()
    updates = {k: v for k, v in {"station_id": station_id, "source": source, "device": device,
                                 "capture_rate": capture_rate, "codec": codec}.items()
               if v is not None}
    settings: Settings = app.settings.model_copy(
        update={"station": app.settings.station.model_copy(update=updates)}
    )
    sid = _station_id(settings.station.station_id)
    spec = settings.station.source
    if drain_only:
        audio: Any = NoSource()
    else:
        audio = open_source(
            spec, station_id=sid, device=settings.station.device,
            capture_rate=settings.station.capture_rate,
            speed=speed if speed is not None else (1.0 if spec == "synthetic" else 0.0),
            start_ns=parse_start(start) if start else None,
            join_tolerance_ns=int(settings.replay.join_tolerance_s * 1e9),
        )
    node = Station(settings, sid, audio, max_chunks=max_chunks, drain_timeout_s=drain_timeout)
    report = run_service(node, metrics_host=settings.metrics_host,
                         metrics_port=settings.metrics_port,
                         registry=station_registry(node.snapshot, sid))
    _echo_report(report, as_json)
    if drain_only and report["spool_depth"]:
        raise ServiceError(f"{report['spool_depth']} chunks still spooled after "
                           f"{drain_timeout:.0f} s", hint="is Kafka reachable? they stay spooled")


# ---- replay ---------------------------------------------------------------------------------
@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--station", help="Station id for every file [from the Song Meter prefix, "
              "else the folder name].")
@click.option("--start", help="Start of the first file, ISO 8601; a station's files (by name) "
              "then follow each other without gaps.")
@click.option("--time-format", help="strptime pattern found in file names, e.g. "
              "'rec-%Y%m%d-%H%M%S' [metadata, then AudioMoth / Song Meter names].")
@click.option("--timezone", help="Zone of times in names, e.g. Europe/Berlin "
              "[replay.timezone, UTC].")
@click.option("--speed", type=float, help="N x real time; 0 as fast as possible "
              "[replay.speed, 0].")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file [one per set of inputs under <state_dir>/replay].")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint and replay everything.")
@click.option("--limit", type=click.IntRange(min=1), help="Publish at most N chunks, then stop "
              "(the checkpoint lets the next run continue).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, no progress bar.")
def replay(paths: tuple[str, ...], station: str | None, start: str | None,
           time_format: str | None, timezone: str | None, speed: float | None,
           checkpoint: Path | None, restart: bool, limit: int | None, as_json: bool) -> None:
    """Replay archived recordings (WAV, FLAC, OGG, MP3; folders, globs, files) into Kafka.

    Any rate and channel count, downmixed and resampled to 32 kHz; chunks carry their
    original times (source=replay), so replaying the same archive again gives the same
    chunk ids. Bad files are skipped with their reason; Ctrl-C stops after what was
    acknowledged is checkpointed, and the same command continues from there.
    """
    from soundscape.producers import file_times
    from soundscape.producers.archive import Naming
    from soundscape.producers.replay import Replay

    settings: Settings = current_settings("replay")
    tz = file_times.zone(timezone or settings.replay.timezone)
    if station is not None:
        _station_id(station)
    if time_format:
        file_times.pattern_regex(time_format)  # a bad pattern fails here, before any work
    naming = Naming(station=station, start_ns=file_times.parse_start(start, tz) if start else None,
                    time_format=time_format, tz=tz)
    run = Replay(settings, list(paths), naming, speed=speed, checkpoint=checkpoint,
                 restart=restart, limit=limit, progress=not as_json and sys.stderr.isatty())
    summary = run_service(run)  # a replay serves no health endpoint: it ends by itself
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        _print_summary(summary)
    if summary.failed_deliveries:
        raise ServiceError(f"{summary.failed_deliveries} chunks were not delivered",
                           hint="run the same command again: the checkpoint resends them")
    if run.stop.is_set():
        click.echo("stopped; run the same command again to continue", err=True)
        sys.exit(130)


def _print_summary(summary: Any) -> None:
    s = summary
    click.echo(f"files:   {s.files_found} found, {s.files_replayed} replayed, "
               f"{s.files_already_done} done before, {len(s.skipped)} skipped, "
               f"{len(s.partial)} read in part")
    click.echo(f"chunks:  {s.chunks} published ({s.bytes / 1e6:.1f} MB, "
               f"{s.chunks_per_s:.1f} chunks/s in {s.seconds:.1f} s), "
               f"{s.chunks_already_acked} acked before, {s.padded_chunks} padded, "
               f"{s.gaps} after a gap")
    if s.dropped_remainders:
        click.echo(f"dropped: {s.dropped_remainders} remainders shorter than the padding "
                   f"minimum ({s.dropped_remainder_s:.2f} s of audio)")
    for item in s.skipped:
        click.echo(f"skipped: {item.path}: {item.reason}")
    for item in s.partial:
        click.echo(f"partial: {item.path}: {item.reason}")
    click.echo(f"checkpoint: {s.checkpoint}")
    if s.stopped_early:
        click.echo("stopped early: the same command continues from the checkpoint")


# ---- bench station --------------------------------------------------------------------------
@click.command("station")
@click.option("--chunks", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--capture-rate", default=48_000, show_default=True,
              help="Rate the audio arrives at (resampled to 32 kHz; 32000 skips resampling).")
@click.option("--source", type=click.Choice(["prepared", "mic"]), default="prepared",
              show_default=True, help="prepared device-like blocks, or the real input device "
              "(real time: 10 s per chunk).")
@click.option("--device", help="Input device for --source mic.")
@click.option("--codec", type=click.Choice(["flac", "wav"]), default="flac", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_station(chunks: int, capture_rate: int, source: str, device: str | None,
                  codec: str, as_json: bool) -> None:
    """Station CPU per chunk: capture, resample, FLAC, spool and publish to the broker."""
    from soundscape.producers.bench import bench_station as run_bench

    _echo_report(run_bench(current_app().settings, chunks, capture_rate, source, device, codec), as_json)
