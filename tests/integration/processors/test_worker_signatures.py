"""Signed chunks through the real worker, keys read from the results database: station
A signing a chunk that claims station B, a broken signature, a revoked station, an
unsigned chunk from a station with a key: each is dead-lettered with its reason and never
scored; good signatures, keyless stations (registered mode) and archive-signed replays
are scored."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.chunk_signing import (
    ARCHIVE_PREFIX,
    SIGNATURE_HEADER,
    ChunkSigner,
    SignatureCheck,
    new_private_key_text,
    private_key_from_text,
    public_key_text,
)
from soundscape.envelope import ChunkEnvelope
from soundscape.messages import Detection, parse
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.signing_keys import DatabaseSigningKeys, register_key, revoke_key
from soundscape.synthetic.chunks import generated_chunks
from topic_reader import read_messages

START_NS = 1_767_225_600 * 1_000_000_000


@pytest.fixture
def settings(kafka_settings: Settings, db_settings: Settings) -> Settings:
    combined = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(combined)
    return combined.model_copy(update={"worker": combined.worker.model_copy(
        update={"group_id": f"sig-{kafka_settings.topics.audio}", "batch_size": 8})})


def _signer(settings: Settings, name: str) -> ChunkSigner:
    key = new_private_key_text()
    register_key(settings, name, public_key_text(private_key_from_text(key)))
    return ChunkSigner.from_text(key, name)


def _chunk(index: int, station: str, source: str = "live") -> tuple[ChunkEnvelope, bytes]:
    envelope, payload = next(iter(generated_chunks(1, 1, START_NS + index * 10**10)))
    return ChunkEnvelope.for_payload(
        payload, station_id=station, chunk_start=envelope.chunk_start, sample_rate=32000,
        seq=index, captured_at=envelope.captured_at, source=source), payload


def test_the_worker_scores_only_what_the_claimed_station_signed(settings: Settings) -> None:
    from soundscape.models import DEMO_BUNDLE

    a, b = _signer(settings, "pi-a"), _signer(settings, "pi-b")
    gone = _signer(settings, "pi-gone")
    archive = _signer(settings, f"{ARCHIVE_PREFIX}field-2024")
    assert revoke_key(settings, "pi-gone")

    good = a.sign(_chunk(0, "pi-a")[0])
    broken = dataclasses.replace(a.sign(_chunk(3, "pi-a")[0]), extra=tuple(
        (k, b"AAAA" + v[4:] if k == SIGNATURE_HEADER else v)
        for k, v in a.sign(_chunk(3, "pi-a")[0]).extra))
    cases = {  # chunk index -> (envelope, what the worker must do)
        0: (good, "scored"),
        1: (b.sign(_chunk(1, "pi-b")[0]), "scored"),
        2: (a.sign(_chunk(2, "pi-b")[0]), "wrong_signer"),  # A claims to be B
        3: (broken, "bad_signature"),
        4: (gone.sign(_chunk(4, "pi-gone")[0]), "revoked_signer"),
        5: (_chunk(5, "pi-a")[0], "unsigned"),  # A has a key: unsigned is a forgery
        6: (_chunk(6, "pi-keyless")[0], "scored"),  # no key registered: registered mode
        7: (archive.sign(_chunk(7, "pi-a", "replay")[0]), "scored"),
        8: (archive.sign(_chunk(8, "pi-a", "live")[0]), "wrong_signer"),
    }
    publisher = ChunkPublisher(settings)
    for index, (envelope, _) in cases.items():
        publisher.publish(envelope, _chunk(index, envelope.station_id, envelope.source)[1])
    publisher.flush()

    keys = DatabaseSigningKeys(settings, ttl_s=30)
    assert len(keys) == 4
    worker = InferenceWorker(settings, ModelScorer.load(Path(DEMO_BUNDLE), settings),
                             worker_id="sig-1", signatures=SignatureCheck(keys.lookup))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 120
    while worker.stats.scored + worker.stats.dead_lettered < len(cases):
        assert time.monotonic() < deadline and thread.is_alive(), worker.stats
        time.sleep(0.2)
    stop.set()
    thread.join(60)

    expected_scored = {i for i, (_, what) in cases.items() if what == "scored"}
    detections = [parse(Detection, m.value()) for m in read_messages(
        settings, settings.topics.detections, expected=len(expected_scored))]
    scored = {(d.station_id, d.chunk_start) for d in detections}
    assert scored == {(cases[i][0].station_id, cases[i][0].chunk_start)
                      for i in expected_scored}
    refused = {}
    for message in read_messages(settings, settings.topics.audio_dlq,
                                 expected=len(cases) - len(expected_scored)):
        headers = dict(message.headers())
        envelope = ChunkEnvelope.from_headers(message.headers(), None, message.key())
        refused[(envelope.station_id, envelope.chunk_start)] = headers["dlq_reason"].decode()
    assert refused == {(env.station_id, env.chunk_start): what
                       for env, what in cases.values() if what != "scored"}
