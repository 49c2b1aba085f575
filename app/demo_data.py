"""`soundscape grafana demo-data`: days of results from four stations, for dashboards and
reports without a field deployment.

Detections come from synthetic soundscapes (processors.drift.scenarios): marsh-01 is
unchanged, marsh-02's noise floor rises 20 dB (a new road) for the last quarter,
wood-03's species change for the last 40 %, wood-04 loses 2 % of its chunks and has a
two-hour power cut. Heartbeats tell the same story. marsh-01 also scores its own chunks
with an int8 bundle (station.edge_bundle): its heartbeats carry the edge counts (a few
chunks skipped around midday, when the enclosure is hot) and `edge_results` its results. Everything is written through the
sink's writer (idempotent: a second run adds nothing), then the drift checks run over
it (`drift check --store`). Two things a live deployment fills that a bulk load cannot:
station locations are set (the sink leaves them to people), and `written_at` is set to
when a live sink would have stored each result (the writer stamps the load time).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from soundscape.counters import Counters
from soundscape.messages import Detection, Heartbeat
from soundscape.processors.drift import batch
from soundscape.processors.drift import scenarios as sc
from soundscape.processors.drift.summary import CHUNK_NS, NS
from soundscape.settings import Settings
from soundscape.sinks.connection import connect
from soundscape.sinks.writer import ResultBatch, ResultWriter


@dataclass(frozen=True)
class DemoStation:
    station_id: str
    name: str
    latitude: float
    longitude: float
    elevation_m: float


STATIONS = (
    DemoStation("marsh-01", "Reed bed, north", 52.4731, 13.6342, 34.0),
    DemoStation("marsh-02", "Reed bed, by the road", 52.4688, 13.6451, 33.0),
    DemoStation("wood-03", "Beech wood, ridge", 52.4912, 13.6177, 61.0),
    DemoStation("wood-04", "Beech wood, clearing", 52.4870, 13.6020, 55.0),
)
OUTAGE_HOURS = 2
#: The station that scores its own chunks too, and its bundle's version.
EDGE_STATION = "marsh-01"
EDGE_VERSION = f"{sc.BUNDLE_VERSION}-int8"


def segments(station_id: str, chunks: int) -> list[sc.Segment]:
    """The demo story of each station over `chunks` 10-s slots."""
    if station_id == "marsh-02":
        change = chunks * 3 // 4
        return [sc.Segment(change, sc.NORMAL), sc.Segment(chunks - change, sc.LOUDER)]
    if station_id == "wood-03":
        change = chunks * 3 // 5
        return [sc.Segment(change, sc.NORMAL), sc.Segment(chunks - change, sc.NEW_SPECIES)]
    if station_id == "wood-04":
        outage = min(OUTAGE_HOURS * 360, chunks // 4)
        before = chunks // 2
        return [sc.Segment(before, sc.NORMAL, missing=0.02), sc.Segment(outage, None),
                sc.Segment(chunks - before - outage, sc.NORMAL, missing=0.02)]
    return [sc.Segment(chunks, sc.NORMAL)]


def detections(start_ns: int, chunks: int) -> Iterator[Detection]:
    """The stations' results in time order, as a live sink receives them (so the
    tables' physical order follows time, as the BRIN indexes expect)."""
    streams = [sc.station_stream(s.station_id, start_ns, segments(s.station_id, chunks),
                                 source="live") for s in STATIONS]
    return heapq.merge(*streams, key=lambda d: (d.chunk_start, d.station_id))


def heartbeats(start_ns: int, chunks: int) -> Iterator[Heartbeat]:
    """One a minute per station while it runs: spool, disk, temperature, clock."""
    minutes = chunks // 6
    for station in STATIONS:
        rng = random.Random(station.station_id)
        down = (minutes // 2, minutes // 2 + min(OUTAGE_HOURS * 60, minutes // 4)) \
            if station.station_id == "wood-04" else (minutes, minutes)
        # marsh-02's card fills up (5 GB over the period); the others barely change.
        disk, use = (6e9, 5e9 / max(minutes, 1)) if station.station_id == "marsh-02" \
            else (24e9, 2e5)
        scored = skipped = 0
        edge = station.station_id == EDGE_STATION
        for minute in range(minutes):
            if down[0] <= minute < down[1]:
                continue
            sent = start_ns + minute * 60 * NS + rng.randint(0, 2000) * 1_000_000
            hour = (sent / NS / 3600) % 24
            spool = max(0, int(rng.gauss(0, 1.5)))
            if down[1] <= minute < down[1] + 20:
                spool = 0  # it lost power: nothing was recorded, nothing to catch up
            disk -= use * rng.uniform(0.5, 1.5)
            if edge:  # six chunks a minute; around midday one is sometimes not scored
                missed = 1 if 11 <= hour < 14 and rng.random() < 0.3 else 0
                scored, skipped = scored + 6 - missed, skipped + missed
            yield Heartbeat(
                station_id=station.station_id, sent_at=sent, software_version="0.1.0",
                bundle_version=sc.BUNDLE_VERSION, disk_free_bytes=int(disk),
                spool_depth=spool, spool_bytes=spool * 410_000,
                cpu_temperature_c=round(46 + 9 * math.sin((hour - 9) / 24 * 2 * math.pi)
                                        + rng.gauss(0, 0.8), 1),
                clock_offset_ms=round(rng.gauss(0.3, 0.4), 2),
                edge_scored=scored if edge else None, edge_skipped=skipped if edge else None,
            )


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch_: list[Any] = []
    for item in items:
        batch_.append(item)
        if len(batch_) == size:
            yield batch_
            batch_ = []
    if batch_:
        yield batch_


@dataclass
class DemoSummary(Counters):
    start: datetime
    end: datetime
    chunks: int = 0
    detections: int = 0
    heartbeats: int = 0
    drift_reports: int = 0
    drift_alerts: int = 0


def fill(settings: Settings, end: datetime, hours: int,
         progress: Callable[[int], None] = lambda _: None) -> DemoSummary:
    """Write `hours` of demo results ending at `end`; `progress(n)` after each batch."""
    end_ns = int(end.timestamp()) * NS
    end_ns -= end_ns % CHUNK_NS
    chunks = hours * 360
    start_ns = end_ns - chunks * CHUNK_NS
    summary = DemoSummary(datetime.fromtimestamp(start_ns / NS, end.tzinfo),
                          datetime.fromtimestamp(end_ns / NS, end.tzinfo))
    writer = ResultWriter(settings, application_name="soundscape-demo-data")
    try:
        for part in _batches(detections(start_ns, chunks), 5000):
            counts = writer.write(ResultBatch(detections=part))
            summary.chunks += counts.chunks
            summary.detections += counts.detections
            progress(len(part))
        for part in _batches(heartbeats(start_ns, chunks), 5000):
            summary.heartbeats += writer.write(ResultBatch(heartbeats=part)).heartbeats
        _as_if_live(settings, summary.start, summary.end)
        reports = batch.check(settings, summary.start, summary.end,
                              [s.station_id for s in STATIONS])
        for part in _batches(reports, 2000):
            summary.drift_reports += writer.write(ResultBatch(drift=part)).drift_reports
        summary.drift_alerts = sum(r.alert for r in reports)
    finally:
        writer.close()
    return summary


def _as_if_live(settings: Settings, start: datetime, end: datetime) -> None:
    """Station details people would enter, and the store times a live sink would stamp."""
    ids = [s.station_id for s in STATIONS]
    with connect(settings, application_name="soundscape-demo-data") as conn:
        with conn.transaction():
            for s in STATIONS:
                conn.execute(
                    "UPDATE stations SET name = %s, latitude = %s, longitude = %s, "
                    "elevation_m = %s WHERE station_id = %s",
                    (s.name, s.latitude, s.longitude, s.elevation_m, s.station_id))
            conn.execute(
                "UPDATE chunks SET written_at = scored_at + (0.05 + 0.35 * random()) "
                "* interval '1 second' WHERE station_id = ANY(%s) AND chunk_start >= %s "
                "AND chunk_start < %s", (ids, start, end))
            # The edge station's own results: its chunks' labels, scored on the station
            # a second after each chunk ends, with the int8 bundle's slightly other scores.
            conn.execute(
                "INSERT INTO edge_results (chunk_id, bundle_version, station_id, chunk_start, "
                "top_label, confidence, detected, top_k, inference_ms, worker_id, scored_at, "
                "captured_at, signer) "
                "SELECT chunk_id, %s, station_id, chunk_start, top_label, "
                "least(1, top_probability * (0.97 + 0.06 * random())), '[]'::jsonb, top_k, "
                "45 + 10 * random(), 'edge:' || station_id, captured_at + interval '1 second', "
                "captured_at, station_id FROM chunks WHERE station_id = %s AND chunk_start >= %s "
                "AND chunk_start < %s ON CONFLICT DO NOTHING",
                (EDGE_VERSION, EDGE_STATION, start, end))
        conn.execute("VACUUM (ANALYZE) chunks")
        conn.execute("ANALYZE detections")
        conn.execute("ANALYZE station_heartbeats")


def default_end() -> datetime:
    from datetime import UTC

    now = datetime.now(UTC)
    return now - timedelta(seconds=now.second, microseconds=now.microsecond)
