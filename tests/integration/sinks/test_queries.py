"""The documented queries give the right answers on a small known data set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from soundscape.database import database_url
from soundscape.settings import Settings
from soundscape.sinks.partitions import to_ns
from soundscape.sinks.sample_results import CHUNK_NS, detection, heartbeat
from soundscape.sinks.writer import ResultBatch, ResultWriter

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def test_detections_per_day_latest_heartbeat_gaps_and_latency(results_db: Settings) -> None:
    start = to_ns(DAY + timedelta(hours=23, minutes=59))
    # marsh-01: 12 chunks over midnight, missing chunks 4 and 5 (a 20 s gap).
    marsh = [detection("marsh-01", start + i * CHUNK_NS, detections=2, seed=i)
             for i in range(12) if i not in (4, 5)]
    wood = [detection("wood-02", start, detections=1, seed=99)]
    beats = [heartbeat("marsh-01", start + i * 60 * 10**9, spool_depth=i) for i in range(3)]
    writer = ResultWriter(results_db)
    try:
        writer.write(ResultBatch(marsh + wood, beats))
    finally:
        writer.close()

    with psycopg.connect(database_url(results_db, "reader")) as conn:  # Grafana's role
        rows = conn.execute(
            "SELECT day, station_id, label, detections FROM detections_per_day(%s, %s)",
            (DAY, DAY + timedelta(days=2)),
        ).fetchall()
        expected: dict[tuple[object, str, str], int] = {}
        for d in marsh + wood:
            day = datetime.fromtimestamp(d.chunk_start / 1e9, UTC).date()
            for score in d.detections:
                key = (day, d.station_id, score.label)
                expected[key] = expected.get(key, 0) + 1
        assert {(r[0], r[1], r[2]): r[3] for r in rows} == expected
        assert {r[0] for r in rows} == {DAY.date(), (DAY + timedelta(days=1)).date()}
        one = conn.execute(
            "SELECT sum(detections) FROM detections_per_day(%s, %s, 'wood-02')",
            (DAY, DAY + timedelta(days=2)),
        ).fetchone()[0]  # type: ignore[index]
        assert one == 1

        latest = conn.execute(
            "SELECT station_id, spool_depth FROM latest_heartbeats ORDER BY station_id"
        ).fetchall()
        assert latest == [("marsh-01", 2)]  # wood-02 never sent one

        window = (datetime.fromtimestamp(start / 1e9, UTC),
                  datetime.fromtimestamp((start + 12 * CHUNK_NS) / 1e9, UTC))
        gaps = conn.execute(
            "SELECT station_id, gap_start, gap_end, missing FROM coverage_gaps(%s, %s)", window
        ).fetchall()
        gap_start = window[0] + timedelta(seconds=40)
        assert ("marsh-01", gap_start, gap_start + timedelta(seconds=20),
                timedelta(seconds=20)) in gaps
        # wood-02 has one chunk, then nothing until the end of the window.
        assert ("wood-02", window[0] + timedelta(seconds=10), window[1],
                timedelta(seconds=110)) in gaps
        assert len(gaps) == 2

        latency = conn.execute(
            "SELECT capture_to_publish_ms, publish_to_consume_ms, consume_to_score_ms, "
            "score_to_write_ms FROM chunk_latencies WHERE station_id = 'wood-02'"
        ).fetchone()
        assert latency is not None
        assert [round(v) for v in latency[:3]] == [40, 50, 160]  # sample_results' stage times
        assert latency[3] > 0  # written after it was scored
