"""A second, misconfigured worker (an unregistered bundle, a consumer group of its own)
scores the same chunks ahead of the real worker: its results reach the detections topic
first, yet none is stored, none stands in front of the real result of its chunk, and each
is dead-lettered once as `unregistered_bundle` (issue 18)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import psycopg

from soundscape.app.bundle_registration import register
from soundscape.bundle import MANIFEST
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.database import database_url
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.service import SinkService
from soundscape.synthetic.chunks import generated_chunks
from topic_reader import read_messages

CHUNKS = 12


def _score_all(settings: Settings, bundle: Path, worker_id: str, group: str) -> None:
    worker_settings = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"group_id": group, "batch_size": 4})})
    worker = InferenceWorker(worker_settings, ModelScorer.load(bundle, worker_settings),
                             worker_id=worker_id, signatures=None)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 120
    while worker.stats.scored < CHUNKS:
        assert time.monotonic() < deadline and thread.is_alive(), worker.stats
        time.sleep(0.2)
    stop.set()
    thread.join(60)


def test_a_misconfigured_worker_never_stores_over_or_ahead_of_the_real_one(
        kafka_settings: Settings, db_settings: Settings, tmp_path: Path) -> None:
    from soundscape.models import DEMO_BUNDLE

    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(settings)
    real, _ = register(settings, DEMO_BUNDLE)
    wrong = tmp_path / "wrong-bundle"  # same files, a version nobody registered
    shutil.copytree(DEMO_BUNDLE, wrong)
    manifest = json.loads((wrong / MANIFEST).read_text())
    manifest["version"] = "misconfigured-1"
    (wrong / MANIFEST).write_text(json.dumps(manifest))

    publisher = ChunkPublisher(settings)
    start = (time.time_ns() // 10**9 - 3600) // 10 * 10 * 10**9
    for envelope, payload in generated_chunks(CHUNKS, 3, start):
        publisher.publish(envelope, payload)
    publisher.flush()

    _score_all(settings, wrong, "misconfigured", "misconfigured-group")  # first in the topic
    _score_all(settings, Path(DEMO_BUNDLE), "real-1", settings.worker.group_id)
    sink = SinkService(settings)
    thread = threading.Thread(target=sink.run)
    thread.start()
    deadline = time.monotonic() + 120
    while sink.stats.stored + sink.stats.dead_lettered < 2 * CHUNKS:
        assert time.monotonic() < deadline and thread.is_alive(), sink.health()
        time.sleep(0.2)
    sink.request_stop()
    thread.join(60)

    with psycopg.connect(database_url(settings)) as conn:
        rows = conn.execute("SELECT bundle_version, worker_id, count(*) FROM chunks "
                            "GROUP BY 1, 2").fetchall()
        models = [r[0] for r in conn.execute("SELECT bundle_version FROM models")]
    assert rows == [(real.version, "real-1", CHUNKS)]
    assert models == [real.version]
    letters = read_messages(settings, settings.topics.results_dlq, expected=CHUNKS)
    assert len(letters) == CHUNKS
    assert all(dict(m.headers())["dlq_reason"].startswith(b"unregistered_bundle")
               for m in letters)
