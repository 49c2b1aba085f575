"""Real recordings through the real pipeline with a real model (BirdNET): the part of the
main job that shows what sings, and the integration tests' way to check it.

Each recording becomes one station's archive (some stations placed on the map, one
deliberately not), replayed into Kafka like any archive, scored by workers running the
windowed bundle, stored by the sink; the species found are read back from PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from soundscape.database import database_url
from soundscape.envelope import CHUNK_SECONDS, chunk_id_for
from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.app.pipeline_threads import running_clip_keeper, running_pipeline, wait_for_clips
from soundscape.local_services import as_local_service
from soundscape.settings import Settings

log = get_logger(__name__)
_NS = 1_000_000_000


@dataclass(frozen=True)
class Recording:
    path: Path
    station: str
    latitude: float | None = None
    longitude: float | None = None
    note: str = ""


def default_recordings(folder: Path, check_audio: Path) -> list[Recording]:
    """The real recordings the project may use (see tests/data/real/README.md)."""
    found = [
        Recording(folder / "birdnet_sample_redpoll.wav", "real-redpoll",
                  note="BirdNET's own sample: a Lesser Redpoll"),
        Recording(check_audio / "opensoundscape_birds_10s.wav", "real-warblers",
                  note="opensoundscape's sample: North American warblers"),
        Recording(folder / "birdclef_style_frog.ogg", "real-frog",
                  note="BirdCLEF-style clip with Spring Peepers"),
        Recording(folder / "birdclef_style_soundscape.ogg", "real-colombia", 4.6, -74.08,
                  note="a Neotropical soundscape, its station placed near Bogota"),
        Recording(folder / "birdclef_style_soundscape.ogg", "real-unplaced",
                  note="the same soundscape with no location: no range filter"),
    ]
    return [r for r in found if r.path.is_file()]


@dataclass
class StationFindings:
    station: str
    chunks: int
    located: bool
    species: list[dict[str, Any]] = field(default_factory=list)  # best first
    out_of_range: list[str] = field(default_factory=list)


@dataclass
class RealBirdsReport:
    bundle_version: str
    start: str
    chunks_expected: int
    chunks_stored: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    stations: list[StationFindings] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "stations"},
                "stations": [s.__dict__ for s in self.stations]}


def recording_start(now: datetime | None = None) -> datetime:
    """Yesterday 06:00 UTC: inside the results' retention, and the same all day, so a
    second run gives the same chunk ids and stores nothing twice."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)


def run_real_birds(settings: Settings, bundle: Path, recordings: Sequence[Recording], *,
                   workers: int = 1, start: datetime | None = None, progress: bool = True,
                   timeout_s: float = 900, top: int = 5) -> RealBirdsReport:
    """Replay the recordings through workers running `bundle` and the sink; summarise."""
    from soundscape.app.worker_cli import station_sites
    from soundscape.processors.scoring import ModelScorer
    from soundscape.producers.archive import Naming
    from soundscape.producers.replay import Replay
    from soundscape.sinks.stations import set_station

    start = start or recording_start()
    start_ns = int(start.timestamp()) * _NS
    for rec in recordings:
        set_station(settings, rec.station, latitude=rec.latitude, longitude=rec.longitude,
                    clear_location=rec.latitude is None)
    scorers = [ModelScorer.load(bundle, settings, sites=station_sites(settings, bundle))
               for _ in range(workers)]
    expected: dict[str, str] = {}
    report = RealBirdsReport(scorers[0].version, start.isoformat(), 0)
    began = time.monotonic()
    as_replay = as_local_service(settings, "replay")
    with running_clip_keeper(settings) as keeper, \
            running_pipeline(settings, scorers, "real-birds") as pool:
        for rec in recordings:
            # The replay decides what becomes a chunk (a short tail is padded or dropped by
            # its remainder rule); what it sent is what must come back.
            sent = Replay(as_replay, [str(rec.path)],
                          Naming(station=rec.station, start_ns=start_ns),
                          speed=0, restart=True, progress=False).run()
            for index in range(sent.chunks + sent.chunks_already_acked):
                ns = start_ns + index * CHUNK_SECONDS * _NS
                expected[str(chunk_id_for(rec.station, ns))] = rec.station
        report.chunks_expected = len(expected)
        _wait(settings, set(expected), pool, timeout_s, progress)
        wait_for_clips(keeper, len(expected) - sum(w.stats.dead_lettered for w in pool), 60)
    report.seconds = round(time.monotonic() - began, 2)
    report.dead_lettered = sum(w.stats.dead_lettered for w in pool)
    _summarise(settings, report, expected, recordings, top)
    return report


def _wait(settings: Settings, ids: set[str], workers: list[Any], timeout_s: float,
          progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(ids), desc="real recordings scored and stored", unit="chunk",
               disable=not progress)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        while time.monotonic() < deadline:
            stored = conn.execute("SELECT count(*) FROM chunks WHERE chunk_id = ANY(%s::uuid[])",
                                  (list(ids),)).fetchone()[0]
            done = stored + sum(w.stats.dead_lettered for w in workers)
            bar.update(done - bar.n)
            if done >= len(ids):
                bar.close()
                return
            time.sleep(0.5)
    bar.close()
    raise ServiceError(f"only {bar.n} of {len(ids)} real-recording chunks stored after "
                       f"{timeout_s:.0f} s", hint="see the worker and sink logs above")


def _summarise(settings: Settings, report: RealBirdsReport, expected: dict[str, str],
               recordings: Sequence[Recording], top: int) -> None:
    ids = list(expected)
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        report.chunks_stored = conn.execute(
            "SELECT count(*) FROM chunks WHERE chunk_id = ANY(%s::uuid[])", (ids,)).fetchone()[0]
        rows = conn.execute(
            """SELECT station_id, label, common_name, max(probability), count(*),
                      bool_or(in_range IS FALSE)
               FROM detections WHERE chunk_id = ANY(%s::uuid[])
               GROUP BY station_id, label, common_name ORDER BY station_id, 4 DESC""",
            (ids,)).fetchall()
    by_station: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_station.setdefault(row[0], []).append(row)
    for rec in recordings:
        chunks = sum(1 for station in expected.values() if station == rec.station)
        found = StationFindings(rec.station, chunks, rec.latitude is not None)
        for _, label, common, best, count, outside in by_station.get(rec.station, [])[:top]:
            found.species.append({"label": label, "common_name": common,
                                  "best": round(float(best), 3), "chunks": int(count),
                                  "in_range": None if not found.located else not outside})
        found.out_of_range = sorted({common or label for _, label, common, _, _, outside
                                     in by_station.get(rec.station, []) if outside})
        report.stations.append(found)
