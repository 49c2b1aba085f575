"""Real recordings through Kafka, the worker running BirdNET and the sink into PostgreSQL:
the species the recordings' README lists are found where they sing, the range filter keeps
a Madagascar bird out of Colombia, and a chunk the model cannot use is dead-lettered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from confluent_kafka import Consumer

from soundscape.audio_codec import encode
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope
from soundscape.kafka_clients import consumer_config
from soundscape.models.birdnet.importer import CHECK_AUDIO
from soundscape.app.worker_cli import station_sites
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.app.real_birds import RealBirdsReport, default_recordings, run_real_birds
from soundscape.settings import Settings
from soundscape.sinks import migrate

REAL = Path(__file__).resolve().parents[3] / "data" / "real"
FLUFFTAIL = "Sarothrura insularis"


@pytest.fixture
def pipeline_settings(kafka_settings: Settings, db_settings: Settings) -> Iterator[Settings]:
    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(settings)
    yield settings


def _top_k(settings: Settings, station: str) -> list[list[dict]]:
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        rows = conn.execute("SELECT top_k FROM chunks WHERE station_id = %s ORDER BY chunk_start",
                            (station,)).fetchall()
    return [row[0] for row in rows]


def _detections(settings: Settings, station: str) -> list[tuple]:
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        return conn.execute(
            "SELECT label, common_name, probability, window_start_s, window_end_s, in_range "
            "FROM detections WHERE station_id = %s", (station,)).fetchall()


def _in_top3(top_k: list[dict], common: str) -> bool:
    return any(item.get("common_name") == common for item in top_k[:3])


def test_real_recordings_give_the_species_that_sing_in_them(
        pipeline_settings: Settings, birdnet_bundle: Path) -> None:
    report: RealBirdsReport = run_real_birds(
        pipeline_settings, birdnet_bundle, default_recordings(REAL, CHECK_AUDIO), progress=False)
    print(json.dumps(report.as_dict(), indent=1))
    assert report.chunks_stored == report.chunks_expected and report.dead_lettered == 0

    # BirdNET's sample: a Lesser Redpoll in the first (only) chunk, found in 0-3 s.
    assert _in_top3(_top_k(pipeline_settings, "real-redpoll")[0], "Lesser Redpoll")
    redpoll = [d for d in _detections(pipeline_settings, "real-redpoll") if d[1] == "Lesser Redpoll"]
    assert redpoll and redpoll[0][3] == 0.0 and redpoll[0][4] == 3.0 and redpoll[0][2] > 0.8

    # opensoundscape's clip: a Tennessee Warbler (3-6 s).
    assert _in_top3(_top_k(pipeline_settings, "real-warblers")[0], "Tennessee Warbler")

    # The frog clip: Spring Peepers, in the top 3 of several chunks.
    frog = _top_k(pipeline_settings, "real-frog")
    assert sum(_in_top3(top, "Spring Peeper") for top in frog) >= 3

    # The soundscape without a location reports Madagascar Flufftail (BirdNET's false
    # positive); placed in Colombia, every flufftail result is marked out of range.
    unplaced = [d for d in _detections(pipeline_settings, "real-unplaced") if d[0] == FLUFFTAIL]
    placed = [d for d in _detections(pipeline_settings, "real-colombia") if d[0] == FLUFFTAIL]
    assert len(unplaced) >= 10 and all(d[5] is None for d in unplaced)
    assert len(placed) == len(unplaced) and all(d[5] is False for d in placed)
    colombia = next(s for s in report.stations if s.station == "real-colombia")
    assert "Madagascar Flufftail" in colombia.out_of_range


def test_drop_mode_reports_no_madagascar_flufftail_in_colombia(
        pipeline_settings: Settings, birdnet_bundle: Path) -> None:
    worker = pipeline_settings.worker.model_copy(update={"location_filter": "drop"})
    settings = pipeline_settings.model_copy(update={"worker": worker})
    soundscape = [r for r in default_recordings(REAL, CHECK_AUDIO)
                  if r.station in ("real-colombia", "real-unplaced")]
    run_real_birds(settings, birdnet_bundle, soundscape, progress=False)
    assert not [d for d in _detections(settings, "real-colombia") if d[0] == FLUFFTAIL]
    assert not any(item["label"] == FLUFFTAIL for top in _top_k(settings, "real-colombia")
                   for item in top)
    assert [d for d in _detections(settings, "real-unplaced") if d[0] == FLUFFTAIL]


def test_a_chunk_at_8_khz_is_dead_lettered_and_the_worker_carries_on(
        pipeline_settings: Settings, birdnet_bundle: Path) -> None:
    settings = pipeline_settings
    publisher = ChunkPublisher(settings)
    start = 1_760_000_000 * 10**9
    low = encode(np.zeros(80_000, np.float32), 8000)
    good = encode((np.random.default_rng(1).standard_normal(320_000) * 0.01).astype(np.float32), 32000)
    for offset, (payload, rate) in enumerate([(low, 8000), (good, 32000)]):
        envelope = ChunkEnvelope.for_payload(payload, station_id="low-rate", sample_rate=rate,
                                             chunk_start=start + offset * 10 * 10**9,
                                             channels=1, codec="flac", seq=offset,
                                             captured_at=start)
        publisher.publish(envelope, payload)
    publisher.flush()
    scorer = ModelScorer.load(birdnet_bundle, settings, sites=station_sites(settings, birdnet_bundle))
    worker = InferenceWorker(settings, scorer, worker_id="low-rate-test")
    stats = worker.run(threading.Event(), max_chunks=2)
    assert stats.scored == 1 and stats.dead_lettered == 1

    consumer = Consumer(consumer_config(settings, "dlq-reader-low-rate"))
    consumer.subscribe([settings.topics.audio_dlq])
    try:
        messages = []
        for _ in range(30):
            messages += [m for m in consumer.consume(10, timeout=1.0) if m.error() is None]
            if messages:
                break
    finally:
        consumer.close()
    headers = dict(messages[0].headers())
    assert headers["dlq_reason"] == b"sample_rate_too_low"
    assert b"8000 Hz" in headers["dlq_detail"]
