"""The clip keeper against the real broker and database: chunks published to the audio
topic, results naming their offsets, clips written and recorded once, the quota kept
without touching reviewed clips, gone or mismatched audio refused."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from confluent_kafka import Producer

from soundscape.audio_codec import encode
from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope
from soundscape.kafka_clients import producer_config
from soundscape.messages import AudioSource, Detection, LabelScore
from soundscape.settings import Settings
from soundscape.sinks import clip_metrics
from soundscape.sinks.clip_files import clips_dir
from soundscape.sinks.clip_keeper import ClipKeeper, ClipStats
from soundscape.sinks.sample_results import detection

pytestmark = pytest.mark.integration

CHUNK_NS = 10 * 10**9
START_NS = 1_780_000_000 * 10**9


@pytest.fixture
def clip_settings(sink_settings: Settings, tmp_path: Path) -> Settings:
    clips = sink_settings.clips.model_copy(update={
        "dir": tmp_path / "clips", "group_id": f"clips-{uuid.uuid4().hex[:6]}",
        "negative_sample_rate": 0.0, "batch_timeout_ms": 100})
    return sink_settings.model_copy(update={"clips": clips})


def publish_chunks(settings: Settings, station: str, count: int,
                   first: int = 0) -> list[tuple[ChunkEnvelope, bytes, AudioSource]]:
    """Real FLAC chunks of noise on the audio topic; each with where it landed."""
    producer = Producer(producer_config(settings))
    rng = np.random.default_rng(first)
    sent: list[tuple[ChunkEnvelope, bytes]] = []
    where: dict[int, AudioSource] = {}
    for index in range(first, first + count):
        payload = encode(rng.normal(0, 0.1, (32_000 * 10, 1)).astype(np.float32), 32_000)
        start = START_NS + index * CHUNK_NS
        envelope = ChunkEnvelope.for_payload(payload, station_id=station, chunk_start=start,
                                             sample_rate=32_000, seq=index,
                                             captured_at=start + CHUNK_NS
                                             ).with_published_at(time.time_ns())
        sent.append((envelope, payload))

        def landed(error, msg, slot=len(sent) - 1) -> None:  # noqa: ANN001
            assert error is None, error
            where[slot] = AudioSource(partition=msg.partition(), offset=msg.offset())

        producer.produce(settings.topics.audio, payload, key=envelope.key,
                         headers=envelope.to_headers(), on_delivery=landed)
    assert producer.flush(30) == 0
    return [(env, data, where[i]) for i, (env, data) in enumerate(sent)]


def result_for(envelope: ChunkEnvelope, source: AudioSource | None,
               probability: float | None) -> Detection:
    """A result of that chunk: one detection of `probability`, or none (None)."""
    base = detection(envelope.station_id, envelope.chunk_start, detections=0)
    found = [] if probability is None else [LabelScore(label="Parus major",
                                                       probability=probability)]
    top = found or base.top_k
    return base.model_copy(update={"detections": found, "top_k": top, "audio_source": source})


def publish_results(settings: Settings, results: list[Detection]) -> None:
    producer = Producer(producer_config(settings))
    for result in results:
        producer.produce(settings.topics.detections, result.to_bytes(),
                         key=result.station_id.encode())
    assert producer.flush(30) == 0


@pytest.fixture
def run_keeper() -> Iterator:
    threads: list[tuple[ClipKeeper, threading.Thread]] = []

    def run(settings: Settings, until_consumed: int, timeout_s: float = 90) -> ClipStats:
        keeper = ClipKeeper(settings)
        thread = threading.Thread(target=keeper.run, daemon=True)
        threads.append((keeper, thread))
        thread.start()
        deadline = time.monotonic() + timeout_s
        while keeper.stats.committed < until_consumed and time.monotonic() < deadline:
            time.sleep(0.1)
        keeper.request_stop()
        thread.join(60)
        assert keeper.stats.committed >= until_consumed, keeper.stats.as_dict()
        return keeper.stats

    yield run
    for keeper, thread in threads:
        keeper.request_stop()
        thread.join(30)


def rows(settings: Settings) -> dict[uuid.UUID, tuple]:
    with psycopg.connect(database_url(settings, "reader")) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT chunk_id, path, bytes, reason, evicted_at FROM clips")}


def test_confident_detections_are_kept_once_with_their_exact_audio(
    clip_settings: Settings, run_keeper
) -> None:
    chunks = publish_chunks(clip_settings, "clips-a", 5)
    probabilities = [0.9, 0.3, None, 0.55, 0.5]  # kept, not sure, nothing, kept, kept
    publish_results(clip_settings, [result_for(env, where, p)
                                    for (env, _, where), p in zip(chunks, probabilities)])
    counted = clip_metrics.CLIPS.labels("detection")._value.get()
    stats = run_keeper(clip_settings, until_consumed=5)
    assert (stats.kept_detection, stats.skipped, stats.kept_negative) == (3, 2, 0)
    assert clip_metrics.CLIPS.labels("detection")._value.get() - counted == 3

    stored = rows(clip_settings)
    root = clips_dir(clip_settings)
    kept = [(env, data) for (env, data, _), p in zip(chunks, probabilities)
            if p is not None and p >= 0.5]
    assert set(stored) == {env.chunk_id for env, _ in kept}
    for env, data in kept:
        path, size, reason, evicted = stored[env.chunk_id]
        assert (root / path).read_bytes() == data and size == len(data)
        assert reason == "detection" and evicted is None
        assert path.startswith("clips-a/2026-") and path.endswith(".flac")
    assert not list(root.rglob("*.tmp"))

    # The same results again, from the start (a new group): the files are rewritten
    # (the same bytes), no row is stored twice.
    again = clip_settings.model_copy(update={"clips": clip_settings.clips.model_copy(
        update={"group_id": clip_settings.clips.group_id + "-again"})})
    second = run_keeper(again, until_consumed=5)
    assert (second.kept, second.already_kept) == (0, 3)
    assert rows(clip_settings) == stored


def test_negatives_are_sampled_by_chunk_id_and_gone_or_wrong_audio_is_refused(
    clip_settings: Settings, run_keeper
) -> None:
    settings = clip_settings.model_copy(update={"clips": clip_settings.clips.model_copy(
        update={"negative_sample_rate": 1.0})})
    chunks = publish_chunks(settings, "clips-b", 3)
    (env0, _, at0), (env1, _, at1), (env2, _, _) = chunks
    beyond = AudioSource(partition=at0.partition, offset=at0.offset + 10_000)
    publish_results(settings, [
        result_for(env0, at0, None),      # a negative, kept (rate 1.0)
        result_for(env1, at0, 0.9),       # names chunk 0's offset: refused
        result_for(env2, beyond, 0.9),    # audio the topic does not hold: expired
        result_for(env2, None, 0.9),      # a result without a source (an older worker)
    ])
    stats = run_keeper(settings, until_consumed=4)
    assert (stats.kept_negative, stats.kept_detection) == (1, 0), stats.as_dict()
    assert (stats.mismatched, stats.expired, stats.skipped) == (1, 1, 1), stats.as_dict()
    assert set(rows(settings)) == {env0.chunk_id}
    assert rows(settings)[env0.chunk_id][2] == "negative"


def test_over_the_quota_the_oldest_unreviewed_clips_go_and_reviewed_ones_stay(
    clip_settings: Settings, run_keeper
) -> None:
    chunks = publish_chunks(clip_settings, "clips-c", 4)
    size = len(chunks[0][1])
    quota = max(1024 * 1024, int(size * 2.5))
    settings = clip_settings.model_copy(update={"clips": clip_settings.clips.model_copy(
        update={"max_bytes": quota})})
    oldest = chunks[0][0]
    with psycopg.connect(database_url(settings, "writer")) as conn:  # reviewed before
        conn.execute("INSERT INTO reviews (chunk_id, chunk_start, label, verdict, reviewer) "
                     "VALUES (%s, to_timestamp(%s), 'Parus major', 'confirm', 'test')",
                     (oldest.chunk_id, oldest.chunk_start / 1e9))
    copies = 1 + quota // size  # enough chunks that the quota is passed
    more = publish_chunks(settings, "clips-c", max(0, copies + 2 - 4), first=4)
    everything = chunks + more
    publish_results(settings, [result_for(env, where, 0.95) for env, _, where in everything])
    stats = run_keeper(settings, until_consumed=len(everything))
    stored = rows(settings)
    live = {cid: r for cid, r in stored.items() if r[3] is None}
    assert len(stored) == len(everything)
    assert stats.evicted >= 1 and stats.evicted == len(stored) - len(live)
    assert sum(r[1] for r in live.values()) <= quota
    assert oldest.chunk_id in live, "a reviewed clip was evicted"
    root = clips_dir(settings)
    for cid, (path, _, _, evicted) in stored.items():
        assert (root / path).exists() == (evicted is None), cid
    # the evicted ones are the oldest unreviewed recordings
    order = [env.chunk_id for env, _, _ in everything if env.chunk_id != oldest.chunk_id]
    gone = [cid for cid in order if stored[cid][3] is not None]
    assert gone == order[:len(gone)]
