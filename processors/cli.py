"""`soundscape worker`: the inference service."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from soundscape.logs import configure_logging, get_logger
from soundscape.settings import Settings, load_settings


def resolve_bundle(settings: Settings, bundle: Path | None) -> Path:
    from soundscape.errors import UserError

    chosen = bundle or settings.worker.bundle
    if chosen is None:
        from soundscape.models import DEMO_BUNDLE

        chosen = DEMO_BUNDLE
    if not (chosen / "bundle.json").is_file():
        raise UserError(f"{chosen} is not a model bundle (no bundle.json)",
                        hint="pass --bundle DIR or set SOUNDSCAPE_WORKER__BUNDLE")
    return chosen


@click.command("worker")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Model bundle folder [default: SOUNDSCAPE_WORKER__BUNDLE, else the demo bundle].")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Chunks per batch.")
@click.option("--batch-timeout-ms", type=click.IntRange(1), help="Longest wait to fill a batch.")
@click.option("--worker-id", help="Stable id per worker slot (hostname-pid if unset); a "
              "restarted worker with the same id fences its predecessor's open transaction.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve /metrics and /healthz here [default: SOUNDSCAPE_METRICS_PORT].")
@click.option("--max-chunks", type=click.IntRange(1), help="Stop after this many chunks.")
def worker(bundle: Path | None, batch_size: int | None, batch_timeout_ms: int | None,
           worker_id: str | None, metrics_port: int | None, max_chunks: int | None) -> None:
    """Score audio chunks from Kafka in batches; one detection per chunk, exactly once.

    Runs until SIGTERM or Ctrl-C, then finishes the batch in hand and leaves the consumer
    group. Start more workers with the same group to share the partitions.
    """
    from soundscape.observability import ObservabilityServer
    from soundscape.processors.scoring import ModelScorer
    from soundscape.processors.worker import InferenceWorker

    settings = load_settings()
    overrides = {k: v for k, v in (("batch_size", batch_size),
                                   ("batch_timeout_ms", batch_timeout_ms)) if v is not None}
    if overrides:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update=overrides)})
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("soundscape.worker")
    scorer = ModelScorer.load(resolve_bundle(settings, bundle), settings)
    service = InferenceWorker(settings, scorer, worker_id=worker_id)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    port = settings.metrics_port if metrics_port is None else metrics_port
    server = (ObservabilityServer(service.health, host=settings.metrics_host, port=port).start()
              if port else None)
    if server:
        log.info("metrics and health", port=server.port)
    try:
        stats = service.run(stop, max_chunks=max_chunks)
    finally:
        if server:
            server.stop()
    click.echo(f"scored {stats.scored}, dead-lettered {stats.dead_lettered}, "
               f"batches {stats.batches}, aborted {stats.aborted_batches}")


@click.command("pipeline")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Model bundle [default: the demo bundle]; e.g. a full-size export.")
@click.option("--chunks", default=256, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 32),
              help="Workers in one consumer group (threads of this process).")
@click.option("--batch-size", type=click.IntRange(1, 4096), help="Chunks per batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_pipeline_cmd(bundle: Path | None, chunks: int, workers: int, batch_size: int | None,
                       as_json: bool) -> None:
    """Sustained chunks/s through the real broker and the workers, and how many stations
    (one chunk per 10 s each) that serves in real time. Needs `soundscape infra up`."""
    import json as json_module

    from soundscape.processors.bench import bench_pipeline

    settings = load_settings()
    if batch_size:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"batch_size": batch_size})})
    configure_logging("warning", settings.log_format)
    figures = bench_pipeline(settings, resolve_bundle(settings, bundle), chunks, workers,
                             progress=not as_json)
    if as_json:
        click.echo(json_module.dumps(figures.as_dict(), indent=2))
        return
    for key, value in figures.as_dict().items():
        click.echo(f"{key:>17}: {value}")
