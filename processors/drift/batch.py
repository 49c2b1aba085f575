"""`soundscape drift check`: the drift checks over chunks stored in PostgreSQL.

The same `StationDrift` as the stream, fed from the `chunks` table in time order, so a
backfill gives the reports the stream would have given. Windows that start before
`since` are evaluated only as references (and dropped); windows close when they end by
`until` (stored data is complete, so there is no grace). Reads go through the read-only
role, on the (station_id, chunk_start) index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from soundscape.database import database_url
from soundscape.errors import ServiceError
from soundscape.messages import DriftReport
from soundscape.processors.drift import checks
from soundscape.processors.drift.station import (
    DictPaneStore,
    StationDrift,
    StationMeta,
    iso,
)
from soundscape.processors.drift.summary import CHUNK_NS, Observation, Summary
from soundscape.settings import Settings
from soundscape.result_sink import DatabaseUnavailable, ResultBatch, ResultSink

_COLUMNS = ("station_id, chunk_start_ns, source, top_label, top_probability, rms_dbfs, "
            "noise_floor_dbfs, clipping_ratio, silence_ratio, spectral_centroid_hz")
OBSERVATIONS_SQL = (
    f"SELECT {_COLUMNS} FROM chunks "
    "WHERE station_id = %s AND chunk_start >= %s AND chunk_start < %s ORDER BY chunk_start"
)
LAST_BEFORE_SQL = (
    "SELECT max(chunk_start_ns) FROM chunks WHERE station_id = %s AND chunk_start < %s"
)
STATIONS_SQL = (
    "SELECT station_id, first_seen FROM stations "
    "WHERE first_seen < %s AND last_seen >= %s ORDER BY station_id"
)


def lead(settings: Settings) -> timedelta:
    """How far before `since` chunks are read: the windows reaching into it, and (with
    the `previous` reference) the reference of the first window."""
    drift = settings.drift
    windows = 1 + (drift.reference_windows if drift.reference == "previous" else 0)
    return timedelta(seconds=drift.window_s * windows)


def connect_reader(settings: Settings) -> psycopg.Connection[Any]:
    """A read-only session (a transaction, so that chunks stream from a server-side cursor)."""
    return psycopg.connect(database_url(settings, "reader"), connect_timeout=10,
                           options="-c timezone=UTC -c default_transaction_read_only=on",
                           application_name="soundscape-drift")


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def observations(conn: psycopg.Connection[Any], station: str, since: datetime,
                 until: datetime) -> Iterator[Observation]:
    """The station's stored chunks in [since, until), oldest first, streamed."""
    with conn.cursor(name="drift_observations") as cur:
        cur.itersize = 5000
        cur.execute(OBSERVATIONS_SQL, (station, since, until))
        while rows := cur.fetchmany(5000):
            for row in rows:
                yield Observation(*row)


class DatabaseBaseline:
    """The pinned baseline period of each station, summarised once from `chunks`."""

    def __init__(self, settings: Settings, connect: Callable[[], psycopg.Connection[Any]]
                 | None = None) -> None:
        drift = settings.drift
        assert drift.baseline_start is not None and drift.baseline_end is not None
        self.start, self.end = drift.baseline_start, drift.baseline_end
        self.connect = connect or (lambda: connect_reader(settings))
        self.cache: dict[str, tuple[Summary, checks.ReferenceInfo]] = {}

    def __call__(self, station: str) -> tuple[Summary, checks.ReferenceInfo]:
        if station not in self.cache:
            with self.connect() as conn:
                summary = Summary.of(observations(conn, station, self.start, self.end))
            self.cache[station] = summary, {
                "mode": "baseline", "reference_start": iso(ns(self.start)),
                "reference_end": iso(ns(self.end)), "reference_chunks": summary.chunks,
            }
        return self.cache[station]


@dataclass(frozen=True)
class StationRange:
    station_id: str
    first_seen: datetime


def stations_in(conn: psycopg.Connection[Any], since: datetime,
                until: datetime) -> list[StationRange]:
    return [StationRange(*row) for row in conn.execute(STATIONS_SQL, (until, since))]


def check_station(settings: Settings, conn: psycopg.Connection[Any], station: StationRange,
                  since: datetime, until: datetime,
                  baseline: DatabaseBaseline | None = None) -> list[DriftReport]:
    """Every report for the station's windows starting in [since, until), and silences."""
    drift = settings.drift
    since_ns = ns(since)
    read_from = since - lead(settings)
    meta = StationMeta(station.station_id, first_seen=ns(station.first_seen))
    last = conn.execute(LAST_BEFORE_SQL, (station.station_id, read_from)).fetchone()
    if last and last[0] is not None:
        meta.watermark = int(last[0]) + CHUNK_NS
    state = StationDrift(meta, DictPaneStore(), drift, baseline)
    reports: list[DriftReport] = []
    for obs in observations(conn, station.station_id, read_from, until):
        reports += state.ingest(obs).reports
    reports += state.close_due(until=ns(until))
    reports += state.silence_reports(ns(until))
    return [r for r in reports
            if (r.window_end > since_ns if r.check == "silent" else r.window_start >= since_ns)]


def check(settings: Settings, since: datetime, until: datetime,
          stations: list[str] | None = None,
          progress: Callable[[list[StationRange]], Iterable[StationRange]] = iter,
          ) -> list[DriftReport]:
    """Drift reports of the stations (default: all with data in the range); `progress`
    wraps the list of stations (tqdm, for a bar)."""
    baseline = DatabaseBaseline(settings) if settings.drift.reference == "baseline" else None
    reports: list[DriftReport] = []
    with connect_reader(settings) as conn:
        known = stations_in(conn, since - lead(settings), until)
        chosen = [s for s in known if stations is None or s.station_id in stations]
        for station in progress(chosen):
            reports += check_station(settings, conn, station, since, until, baseline)
    return reports


def store(sink: ResultSink, reports: list[DriftReport]) -> int:
    """Write reports to drift_reports through a result sink (idempotent), in parts of
    2,000; returns how many were new. The sink is closed afterwards."""
    stored = 0
    try:
        for first in range(0, len(reports), 2000):
            stored += sink.write(ResultBatch(drift=reports[first:first + 2000])).drift_reports
    except DatabaseUnavailable as exc:
        raise ServiceError(f"cannot store the reports: {exc}",
                           hint="is the database up? `soundscape infra status`") from None
    finally:
        sink.close()
    return stored
