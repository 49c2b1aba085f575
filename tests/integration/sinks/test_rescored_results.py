"""A chunk scored twice (a replayed archive, a redelivery after an aborted transaction)
keeps the labels of the result stored first: the second result's labels may differ a
little, and rows of both would contradict the chunk row."""

from __future__ import annotations

from datetime import UTC, datetime

from sink_testkit import column, scalar

from soundscape.settings import Settings
from soundscape.sinks.partitions import to_ns
from soundscape.sinks.sample_results import CHUNK_NS, detection
from soundscape.sinks.writer import ResultBatch, ResultWriter

START = to_ns(datetime(2026, 11, 20, 5, tzinfo=UTC))


def stored_labels(settings: Settings, chunk_id: object) -> list[str]:
    return sorted(column(settings, "SELECT label FROM detections WHERE chunk_id = %s",
                         chunk_id))


def test_a_chunk_scored_again_keeps_its_first_labels(results_db: Settings) -> None:
    first = detection("marsh-01", START, detections=3, seed=1)
    again = detection("marsh-01", START, detections=4, seed=2)  # other labels, one more
    assert {s.label for s in first.detections} != {s.label for s in again.detections}
    fresh = detection("marsh-01", START + CHUNK_NS, detections=2, seed=3)
    twice_a = detection("marsh-01", START + 2 * CHUNK_NS, detections=2, seed=4)
    twice_b = detection("marsh-01", START + 2 * CHUNK_NS, detections=3, seed=5)

    writer = ResultWriter(results_db)
    try:
        assert writer.write(ResultBatch([first])).detections == 3
        # In a later batch: the scored-again chunk adds nothing, the new chunk goes in
        # whole; in one batch, the first of the two results of a chunk is the one kept.
        counts = writer.write(ResultBatch([again, fresh, twice_a, twice_b]))
    finally:
        writer.close()

    assert (counts.chunks, counts.detections, counts.duplicates) == (2, 4, 2)
    assert stored_labels(results_db, first.chunk_id) == sorted(s.label for s in first.detections)
    assert stored_labels(results_db, fresh.chunk_id) == sorted(s.label for s in fresh.detections)
    assert stored_labels(results_db, twice_a.chunk_id) == sorted(
        s.label for s in twice_a.detections)
    # Every chunk row agrees with its detection rows.
    assert scalar(results_db, "SELECT count(*) FROM chunks c WHERE detection_count <> "
                              "(SELECT count(*) FROM detections d WHERE d.chunk_id = c.chunk_id)"
                  ) == 0
