"""Windowed results (BirdNET) in PostgreSQL: each detection's common name, window and range
verdict, the chunk's per-window scores and its float16 embedding are stored; fusion
results leave those columns NULL; an embedding that is not base64 is dead-lettered."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
from sink_testkit import ResultPublisher, RunningSink, column, scalar

from soundscape.database import database_url
from soundscape.messages import Detection, LabelScore, WindowScores
from soundscape.settings import Settings
from soundscape.sinks.sample_results import NS, detection, register_sample_bundle
from soundscape.sinks.writer import ResultBatch, ResultWriter, RowsRejected

DIM = 1024  # BirdNET v2.4's embedding


def windowed_detection(station_id: str, chunk_start: int, *, seed: int = 0,
                       embedding: str | None = "auto") -> Detection:
    """A result as a worker running a windowed bundle sends it (three 3 s windows)."""
    base = detection(station_id, chunk_start, detections=2, bundle_version="birdnet-v2.4")
    blackbird = LabelScore(label="Turdus merula", probability=0.91,
                           common_name="Eurasian Blackbird", window_start_s=3.0,
                           window_end_s=6.0, in_range=True)
    flufftail = LabelScore(label="Sarothrura insularis", probability=0.62,
                           common_name="Madagascar Flufftail", window_start_s=6.0,
                           window_end_s=9.0, in_range=False)
    windows = [WindowScores(start_s=0.0, end_s=3.0, top_k=[]),
               WindowScores(start_s=3.0, end_s=6.0, top_k=[blackbird]),
               WindowScores(start_s=6.0, end_s=9.0, top_k=[flufftail, blackbird])]
    if embedding == "auto":
        vector = np.random.default_rng(seed).standard_normal(DIM).astype("<f2")
        embedding = base64.b64encode(vector.tobytes()).decode()
    return Detection.model_validate(base.model_dump() | {
        "top_k": [blackbird.model_dump(), flufftail.model_dump()],
        "detections": [blackbird.model_dump(), flufftail.model_dump()],
        "windows": [w.model_dump() for w in windows],
        "embedding_f16": embedding,
    })


def _recent() -> int:
    return (time.time_ns() // NS - 3600) // 10 * 10 * NS


def _write(settings: Settings, *results: Detection) -> None:
    writer = ResultWriter(settings)
    try:
        writer.write(ResultBatch(list(results)))
    finally:
        writer.close()


def test_windowed_fields_are_stored_and_fusion_leaves_them_null(results_db: Settings) -> None:
    start = _recent()
    birds = windowed_detection("st-birdnet", start, seed=3)
    fusion = detection("st-fusion", start, detections=3)
    _write(results_db, birds, fusion)

    with psycopg.connect(database_url(results_db)) as conn:
        rows = conn.execute(
            "SELECT label, common_name, probability, window_start_s, window_end_s, in_range "
            "FROM detections WHERE chunk_id = %s ORDER BY probability DESC",
            (birds.chunk_id,)).fetchall()
        windows, embedding, top_k = conn.execute(
            "SELECT windows, embedding, top_k FROM chunks WHERE chunk_id = %s",
            (birds.chunk_id,)).fetchone()  # type: ignore[misc]
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in rows] == [
        ("Turdus merula", "Eurasian Blackbird", 3.0, 6.0, True),
        ("Sarothrura insularis", "Madagascar Flufftail", 6.0, 9.0, False),
    ]
    assert [(w["start_s"], w["end_s"]) for w in windows] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]
    assert [s["label"] for s in windows[2]["top_k"]] == ["Sarothrura insularis", "Turdus merula"]
    assert windows[2]["top_k"][0]["in_range"] is False and windows[0]["top_k"] == []
    assert top_k[0]["common_name"] == "Eurasian Blackbird"
    assert isinstance(embedding, bytes) and len(embedding) == 2 * DIM
    sent = base64.b64decode(birds.embedding_f16 or "")
    assert embedding == sent
    assert np.array_equal(np.frombuffer(embedding, "<f2"), np.frombuffer(sent, "<f2"))

    # The fusion result: everything as before windowed bundles.
    assert scalar(results_db, "SELECT windows IS NULL AND embedding IS NULL FROM chunks "
                              "WHERE chunk_id = %s", fusion.chunk_id)
    stored_top_k = column(results_db, "SELECT top_k FROM chunks WHERE chunk_id = %s",
                          fusion.chunk_id)[0]
    assert stored_top_k == [{"label": s.label, "probability": pytest.approx(s.probability)}
                            for s in fusion.top_k]
    assert scalar(results_db, "SELECT count(*) FROM detections WHERE chunk_id = %s AND "
                              "num_nulls(common_name, window_start_s, window_end_s, in_range) = 4",
                  fusion.chunk_id) == 3

    # A windowed result without an embedding (worker.keep_embedding off) stores NULL.
    _write(results_db, windowed_detection("st-birdnet", start + 10 * NS, embedding=None))
    assert scalar(results_db, "SELECT count(*) FROM chunks WHERE station_id = 'st-birdnet' "
                              "AND embedding IS NULL AND windows IS NOT NULL") == 1

    # The read-only role reads the new columns too.
    with psycopg.connect(database_url(results_db, "reader")) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM chunks WHERE embedding IS NOT NULL), "
            "(SELECT count(*) FROM detections WHERE in_range IS FALSE)").fetchone()
    assert counts == (1, 2)


def test_an_embedding_that_is_not_base64_is_rejected_and_the_writer_carries_on(
        results_db: Settings) -> None:
    start = _recent()
    writer = ResultWriter(results_db)
    try:
        with pytest.raises(RowsRejected, match="embedding_f16"):
            writer.write(ResultBatch([windowed_detection("st-bad", start, embedding="%%%%")]))
        counts = writer.write(ResultBatch([windowed_detection("st-bad", start + 10 * NS)]))
    finally:
        writer.close()
    assert counts.chunks == 1 and counts.detections == 2
    assert scalar(results_db, "SELECT count(*) FROM chunks WHERE station_id = 'st-bad'") == 1


def test_the_sink_stores_windowed_results_and_dead_letters_a_bad_embedding(
        sink_settings: Settings, publisher: ResultPublisher,
        start_sink: Callable[..., RunningSink]) -> None:
    register_sample_bundle(sink_settings, version="birdnet-v2.4")
    start = _recent()
    good = [windowed_detection("st-sink", start + i * 10 * NS, seed=i) for i in range(5)]
    bad = windowed_detection("st-sink", start + 50 * NS, embedding="not base64!")
    publisher.results([*good[:2], bad, *good[2:]])
    sink = start_sink(sink_settings, group_id="windowed")
    sink.wait_for(lambda: sink.service.stats.stored + sink.service.stats.dead_lettered >= 6, 60,
                  "the six results")
    sink.stop()
    assert sink.service.stats.dead_lettered == 1
    assert scalar(sink_settings, "SELECT count(*) FROM chunks WHERE station_id = 'st-sink' "
                                 "AND octet_length(embedding) = %s", 2 * DIM) == 5
    assert scalar(sink_settings, "SELECT count(*) FROM detections WHERE station_id = 'st-sink' "
                                 "AND common_name IS NOT NULL") == 10
