"""`soundscape worker` and the pipeline benchmarks: wiring, since they join the model
bundles (models/), the worker (processors/) and the station sites (sinks/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from soundscape.logs import configure_logging, get_logger
from soundscape.chunk_signing import SignatureCheck
from soundscape.cli_context import current_settings
from soundscape.settings import Settings
from soundscape.stall_dump import StallDump

if TYPE_CHECKING:
    from soundscape.processors.bundle_follower import BundleFollower
    from soundscape.processors.scoring import ModelScorer

#: One worker turn is one batch (seconds on a CPU): five minutes is a stall, never a slow
#: batch; then every thread's stack goes to the log (a chaos run once saw a worker wait
#: silently for ten minutes after a broker kill).
WORKER_STALL_DUMP_S = 300.0

def resolve_bundle(settings: Settings, bundle: Path | None) -> Path:
    """A bundle folder, or the name of one under <state_dir>/bundles (where `models
    import` writes them, e.g. birdnet-v2.4); the demo bundle when none is given."""
    from soundscape.errors import UserError

    chosen = bundle or settings.worker.bundle
    if chosen is None:
        from soundscape.models import DEMO_BUNDLE

        chosen = DEMO_BUNDLE
    imported = settings.state_dir / "bundles" / str(chosen)
    if not (chosen / "bundle.json").is_file() and len(Path(chosen).parts) == 1 \
            and (imported / "bundle.json").is_file():
        chosen = imported
    if not (chosen / "bundle.json").is_file():
        hint = "pass --bundle DIR (or a name under <state_dir>/bundles) or set SOUNDSCAPE_WORKER__BUNDLE"
        if str(chosen).startswith("birdnet"):
            hint = "import it first: soundscape models import birdnet"
        raise UserError(f"{chosen} is not a model bundle (no bundle.json, and no bundle of that "
                        f"name in {settings.state_dir / 'bundles'})", hint=hint)
    return chosen


def station_sites(settings: Settings, bundle: Path) -> object | None:
    """Where stations are, for a windowed bundle's range filter: read from the results
    database (`soundscape stations set`), cached; None for fusion bundles."""
    from soundscape.bundle import read_manifest

    if read_manifest(bundle).kind != "windowed" or settings.worker.location_filter == "off":
        return None
    from soundscape.sinks.station_sites import DatabaseStationSites

    return DatabaseStationSites(settings, ttl_s=settings.worker.sites_ttl_s)


def signature_check(settings: Settings) -> SignatureCheck | None:
    """How the worker checks chunk signatures (intake.signatures), against the keys
    registered in the results database; None when the check is off."""
    mode = settings.intake.signatures
    if mode == "off":
        return None
    from soundscape.sinks.signing_keys import DatabaseSigningKeys

    keys = DatabaseSigningKeys(settings, settings.intake.keys_ttl_s)
    get_logger("soundscape.worker").info("chunk signatures checked", mode=mode, keys=len(keys))
    return SignatureCheck(keys.lookup, require=mode == "require")


def following_scorer(settings: Settings, fallback: Path) -> tuple[ModelScorer, BundleFollower]:
    """The registry's active bundle (or `fallback` before any promote, or while the
    registry cannot be read) and a started follower that watches for the next one."""
    from soundscape.processors.bundle_follower import BundleFollower, Wanted
    from soundscape.processors.scoring import ModelScorer
    from soundscape.sinks.bundle_registry import active_bundle

    log = get_logger("soundscape.worker")

    def active() -> Wanted | None:
        found = active_bundle(settings)
        return None if found is None else Wanted(found.version, found.location)

    def load(path: Path) -> ModelScorer:
        return ModelScorer.load(path, settings, sites=station_sites(settings, path))

    scorer = load(fallback)
    follower = BundleFollower(active, load, scorer.version, settings.worker.registry_poll_s)
    follower.check()  # the active version, if any, is loaded before the first batch
    first = follower.take()
    if first is not None:
        scorer = first
    log.info("following the registry", bundle=scorer.version,
             poll_s=settings.worker.registry_poll_s, **follower.health())
    return scorer, follower.start()


@click.command("worker")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Model bundle folder, or the name of an imported one (birdnet-v2.4, "
                   "birdnet-v2.4-int8) [default: SOUNDSCAPE_WORKER__BUNDLE, else the demo bundle].")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Chunks per batch.")
@click.option("--batch-timeout-ms", type=click.IntRange(1), help="Longest wait to fill a batch.")
@click.option("--worker-id", help="Stable id per worker slot (hostname-pid if unset); a "
              "restarted worker with the same id fences its predecessor's open transaction.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve /metrics and /healthz here [default: SOUNDSCAPE_METRICS_PORT].")
@click.option("--max-chunks", type=click.IntRange(1), help="Stop after this many chunks.")
@click.option("--follow/--no-follow", "follow", default=None,
              help="Run the registry's active bundle and switch to a newly promoted (or rolled "
                   "back) one between batches, without a restart [default: "
                   "SOUNDSCAPE_WORKER__FOLLOW_REGISTRY, off]. Before any promote, the bundle "
                   "of --bundle runs.")
@click.option("--shadow", "shadow", metavar="VERSION",
              help="Score every chunk with this registered candidate beside the live workers: "
                   "its own consumer group, results to the shadow topic (stored apart by "
                   "`soundscape sink --shadow`), nothing dead-lettered. Compare with "
                   "`soundscape models compare`.")
def worker(bundle: Path | None, batch_size: int | None, batch_timeout_ms: int | None,
           worker_id: str | None, metrics_port: int | None, max_chunks: int | None,
           follow: bool | None, shadow: str | None) -> None:
    """Score audio chunks from Kafka in batches; one detection per chunk, exactly once.

    Runs until SIGTERM or Ctrl-C, then finishes the batch in hand and leaves the consumer
    group. Start more workers with the same group to share the partitions.
    """
    from soundscape.processors.scoring import ModelScorer
    from soundscape.service_runner import EventService, run_service
    from soundscape.processors.worker import InferenceWorker

    settings = current_settings("worker")
    overrides = {k: v for k, v in (("batch_size", batch_size),
                                   ("batch_timeout_ms", batch_timeout_ms)) if v is not None}
    if overrides:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update=overrides)})
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("soundscape.worker")
    follow = settings.worker.follow_registry if follow is None else follow
    if shadow and (follow or bundle):
        raise click.UsageError("--shadow VERSION names the bundle; leave out --bundle and --follow")
    follower = None
    if shadow:
        from soundscape.sinks.bundle_registry import registered_location

        chosen = Path(registered_location(settings, shadow))
    else:
        chosen = resolve_bundle(settings, bundle)
    if follow:
        scorer, follower = following_scorer(settings, chosen)
    else:
        scorer = ModelScorer.load(chosen, settings, sites=station_sites(settings, chosen))
    if scorer.kind == "windowed":
        licence = (scorer.bundle.manifest.model_extra or {}).get("licence", {})
        log.info("windowed bundle", labels=len(scorer.labels), rate=scorer.sample_rate,
                 licence=licence.get("name"), location_filter=settings.worker.location_filter)
    worker = InferenceWorker(settings, scorer, worker_id=worker_id,
                             signatures=signature_check(settings), follower=follower,
                             shadow=shadow is not None)
    worker.stall_dump = StallDump(WORKER_STALL_DUMP_S)
    service = EventService("worker", lambda stop: worker.run(stop, max_chunks=max_chunks),
                           worker.health)
    try:
        stats = run_service(service, metrics_host=settings.metrics_host,
                            metrics_port=settings.metrics_port if metrics_port is None
                            else metrics_port)
    finally:
        if follower is not None:
            follower.stop()
    click.echo(f"scored {stats.scored}, dead-lettered {stats.dead_lettered}, "
               f"batches {stats.batches}, aborted {stats.aborted_batches}")


@click.command("pipeline")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Model bundle [default: the demo bundle]; e.g. a full-size export.")
@click.option("--chunks", default=256, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Workers in one consumer group (threads of this process).")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Chunks per batch.")
@click.option("--frontend-path", type=click.Choice(["auto", "fft", "graph"]),
              help="The front-end's form [default: settings.frontend.frontend_path]: fft "
                   "(real FFT, CPU), graph (frontend.onnx's MatMuls), auto.")
@click.option("--compare-frontend", is_flag=True,
              help="Run the chunks twice, front-end as graph then as fft, and print both "
                   "chunks/s and their ratio.")
@click.option("--compare-lanes", metavar="A,B",
              help="Run the chunks with models.lanes A, then B (e.g. 1,2), and print both "
                   "chunks/s and B over A.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1, 20),
              help="With --compare-frontend or --compare-lanes: alternate the two this many "
                   "times and report medians (the load of a shared machine drifts between "
                   "runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_pipeline_cmd(bundle: Path | None, chunks: int, workers: int, batch_size: int | None,
                       frontend_path: str | None, compare_frontend: bool,
                       compare_lanes: str | None, rounds: int, as_json: bool) -> None:
    """Sustained chunks/s through the real broker and the workers, and how many stations
    (one chunk per 10 s each) that serves in real time. Needs `soundscape infra up`.

    \b
    soundscape bench pipeline --bundle bundles/full-int8 --chunks 256
    soundscape bench pipeline --bundle bundles/full-int8 --compare-lanes 1,2 --rounds 2
    """
    import json as json_module

    from soundscape.processors.bench import bench_pipeline, compare_frontend as compare
    from soundscape.processors.bench import compare_lanes as compare_lane_counts

    settings = current_settings()
    if batch_size:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"batch_size": batch_size})})
    configure_logging("warning", settings.log_format)
    if compare_lanes:
        if compare_frontend:
            raise click.UsageError("compare one thing at a time: --compare-frontend or "
                                   "--compare-lanes")
        try:
            first, second = (int(n) for n in compare_lanes.split(","))
            if not (1 <= first <= 64 and 1 <= second <= 64) or first == second:
                raise ValueError
        except ValueError:
            raise click.BadParameter("two different lane counts from 1 to 64, e.g. 1,2",
                                     param_hint="--compare-lanes") from None
        both = compare_lane_counts(settings, resolve_bundle(settings, bundle), chunks,
                                   (first, second), workers, progress=not as_json, rounds=rounds)
        _print_comparison(both, as_json)
        return
    if compare_frontend:
        if frontend_path:
            raise click.UsageError("--compare-frontend runs both paths: leave out --frontend-path")
        both = compare(settings, resolve_bundle(settings, bundle), chunks, workers,
                       progress=not as_json, rounds=rounds)
        _print_comparison(both, as_json)
        return
    figures = bench_pipeline(settings, resolve_bundle(settings, bundle), chunks, workers,
                             progress=not as_json, frontend_path=frontend_path)
    if as_json:
        click.echo(json_module.dumps(figures.as_dict(), indent=2))
        return
    for key, value in figures.as_dict().items():
        click.echo(f"{key:>17}: {value}")


def _print_comparison(both: dict, as_json: bool) -> None:
    import json as json_module

    if as_json:
        click.echo(json_module.dumps(both, indent=2))
        return
    for key, value in both.items():
        if not isinstance(value, dict):
            click.echo(f"{key:>22}: {value}")


@click.command("birdnet")
@click.option("--bundle", default="birdnet-v2.4", show_default=True,
              help="A windowed bundle: a folder or an imported name.")
@click.option("--chunks", default=128, show_default=True, type=click.IntRange(8))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_birdnet_cmd(bundle: str, chunks: int, as_json: bool) -> None:
    """A windowed bundle (BirdNET v2.4) beside the demo bundle, in one run: ms per 10 s chunk
    on one thread, chunks/s of the graph alone on all cores, and chunks/s through the
    broker and a worker for both bundles. Needs `soundscape infra up` and `models import
    birdnet`."""
    import json as json_module

    from soundscape.models import DEMO_BUNDLE
    from soundscape.processors.bench import bench_windowed

    settings = current_settings()
    configure_logging("warning", settings.log_format)
    figures = bench_windowed(settings, resolve_bundle(settings, Path(bundle)), DEMO_BUNDLE,
                             chunks, progress=not as_json)
    if as_json:
        click.echo(json_module.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        click.echo(f"{key:>30}: {value}")
