"""The inference worker against the real broker: exactly one detection per chunk, across
two workers, a SIGKILL in the middle of a batch, and a mix of good and malformed chunks."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from confluent_kafka import Producer

from soundscape.audio_codec import encode
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope, chunk_id_for
from soundscape.infra.process import free_port
from soundscape.kafka_clients import bootstrap_servers, producer_config
from soundscape.messages import Detection, parse
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.synthetic.chunks import generated_chunks
from soundscape.settings import Settings
from topic_reader import read_messages

START_NS = 1_750_000_000 * 10**9


def publish(settings: Settings, count: int, stations: int = 4) -> set[str]:
    publisher = ChunkPublisher(settings)
    ids = set()
    for envelope, payload in generated_chunks(count, stations, START_NS):
        ids.add(str(publisher.publish(envelope, payload).chunk_id))
    publisher.flush()
    return ids


def read_all(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> list:
    """Every committed message on `topic`, waiting for `expected` of them."""
    return read_messages(settings, topic, expected, timeout_s=timeout_s)


def worker_env(settings: Settings, bundle: Path) -> dict[str, str]:
    topics = settings.topics
    return os.environ | {
        "SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(settings),
        "SOUNDSCAPE_TOPICS__AUDIO": topics.audio,
        "SOUNDSCAPE_TOPICS__DETECTIONS": topics.detections,
        "SOUNDSCAPE_TOPICS__AUDIO_DLQ": topics.audio_dlq,
        "SOUNDSCAPE_WORKER__GROUP_ID": f"workers-{topics.audio}",
        "SOUNDSCAPE_WORKER__BUNDLE": str(bundle),
        "SOUNDSCAPE_WORKER__BATCH_SIZE": "8",
        "SOUNDSCAPE_WORKER__DECODE_THREADS": "1",
        "SOUNDSCAPE_LOG_FORMAT": "json",
        "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
        # Where the worker reads the chunk-signing keys (intake.signatures, registered).
        "SOUNDSCAPE_POSTGRES__URL": database_url(settings),
    }


def start_worker(env: dict[str, str], worker_id: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundscape", "worker", "--worker-id", worker_id,
         "--metrics-port", str(port)],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )
    return proc, port


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except Exception:  # noqa: BLE001 - not up yet
        return {}


def test_two_workers_and_a_sigkill_give_exactly_one_detection_each(
    kafka_settings: Settings, bundle: Path, tmp_path: Path
) -> None:
    count = int(os.environ.get("SOUNDSCAPE_TEST_WORKER_CHUNKS", "96"))
    env = worker_env(kafka_settings, bundle)
    started = time.monotonic()
    first, port_a = start_worker(env, "w-a", tmp_path / "a.log")
    second, port_b = start_worker(env, "w-b", tmp_path / "b.log")
    try:
        # Publish once the group has settled with both workers, each holding partitions:
        # chunks published earlier may all be scored by the first worker to join (it holds
        # every partition until the second arrives), and the second would have nothing.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (
            health(port_a).get("partitions") and health(port_b).get("partitions")
        ):
            if first.poll() is not None or second.poll() is not None:
                break
            time.sleep(0.2)
        assert health(port_a).get("partitions") and health(port_b).get("partitions"), (
            "workers did not join the group:\n" + (tmp_path / "a.log").read_text()[-3000:]
            + (tmp_path / "b.log").read_text()[-3000:])
        # Six stations: every one of the topic's three partitions gets chunks.
        sent = publish(kafka_settings, count, stations=6)
        # Kill one worker once both are scoring: its batch in hand is in an open transaction.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if health(port_a).get("batches", 0) >= 1 and health(port_b).get("batches", 0) >= 1:
                break
            if first.poll() is not None or second.poll() is not None:
                break
            time.sleep(0.2)
        if not (health(port_a).get("batches", 0) >= 1 and health(port_b).get("batches", 0) >= 1):
            pytest.fail("workers did not start scoring:\n" + (tmp_path / "a.log").read_text()[-3000:]
                        + (tmp_path / "b.log").read_text()[-3000:])
        scoring_after = time.monotonic() - started
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # Restarted under the same id, it fences the dead one's open transaction at once.
        first, port_a = start_worker(env, "w-a", tmp_path / "a2.log")
        killed = time.monotonic()
        messages = read_all(kafka_settings, kafka_settings.topics.detections, count, timeout_s=300)
        print(f"both workers scoring after {scoring_after:.1f} s; all {count} detections "
              f"{time.monotonic() - killed:.1f} s after the kill")
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            proc.wait(60)
    ids = Counter(str(parse(Detection, m.value()).chunk_id) for m in messages)
    duplicates = {cid: n for cid, n in ids.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} chunks scored twice"
    assert set(ids) == sent, f"missing {len(sent - set(ids))}, unexpected {len(set(ids) - sent)}"
    workers = Counter(parse(Detection, m.value()).worker_id for m in messages)
    assert set(workers) <= {"w-a", "w-b"} and len(workers) == 2, workers


def run_until(worker: InferenceWorker, max_chunks: int, timeout_s: float = 180) -> None:
    """Run the worker in a thread until it has handled `max_chunks`, then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"max_chunks": max_chunks})
    thread.start()
    thread.join(timeout_s)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def _envelope(payload: bytes, **kw: object) -> ChunkEnvelope:
    fields = dict(station_id="mix-1", chunk_start=START_NS, sample_rate=32000, seq=0,
                  captured_at=START_NS) | kw
    return ChunkEnvelope.for_payload(payload, **fields)  # type: ignore[arg-type]


def _nan_wav() -> bytes:
    """Half NaN: far beyond the few non-finite samples the worker zeroes and keeps."""
    audio = np.zeros(320_000, np.float32)
    audio[::2] = np.nan
    buffer = io.BytesIO()
    sf.write(buffer, audio, 32000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_malformed_chunks_go_to_the_dlq_with_their_reason(kafka_settings: Settings,
                                                          bundle: Path) -> None:
    good = [encode(np.sin(np.linspace(0, 3000, 320_000)).astype(np.float32) * 0.1, 32000)
            for _ in range(3)]
    flac = encode(np.zeros(320_000, np.float32), 32000)
    producer = Producer(producer_config(kafka_settings))
    topic = kafka_settings.topics.audio
    expected_reasons = {}

    def send(payload: bytes, headers: list, key: bytes = b"mix-1") -> None:
        producer.produce(topic, value=payload, key=key, headers=headers)

    for i, payload in enumerate(good):
        send(payload, _envelope(payload, chunk_start=START_NS + i * 10**10, seq=i).to_headers())
    bad = {
        "garbage": (b"\x00garbage" * 1000, None),
        "wrong headers": (flac, [("station_id", b"mix-1"), ("codec", b"flac")]),
        "truncated": (flac[: len(flac) // 3], None),
        "nan": (_nan_wav(), "wav"),
        "schema": (flac, "schema"),
    }
    for n, (name, (payload, variant)) in enumerate(bad.items()):
        start = START_NS + (100 + n) * 10**10
        if isinstance(variant, list):
            headers = variant
        else:
            env = _envelope(payload, chunk_start=start, seq=100 + n,
                            codec="wav" if variant == "wav" else "flac")
            headers = env.to_headers()
            if variant == "schema":
                headers = [(k, b"9" if k == "schema_version" else v) for k, v in headers]
        send(payload, headers)
        expected_reasons[name] = {
            "garbage": "undecodable_audio", "wrong headers": "bad_headers",
            "truncated": "undecodable_audio", "nan": "non_finite_audio",
            "schema": "unsupported_schema",
        }[name]
    producer.flush(30)

    scorer = ModelScorer.load(bundle, kafka_settings)
    settings = kafka_settings.model_copy(update={"worker": kafka_settings.worker.model_copy(
        update={"group_id": f"mix-{topic}", "batch_size": 16})})
    worker = InferenceWorker(settings, scorer, worker_id="mix-worker")
    run_until(worker, max_chunks=8)

    detections = read_all(kafka_settings, kafka_settings.topics.detections, 3)
    dead = read_all(kafka_settings, kafka_settings.topics.audio_dlq, 5)
    assert len(detections) == 3
    assert all(parse(Detection, m.value()).worker_id == "mix-worker" for m in detections)
    # Each result names where its chunk sits in the audio topic (the clip keeper reads it).
    audio = {(m.partition(), m.offset()): dict(m.headers()).get("seq")
             for m in read_all(kafka_settings, topic, 8)}
    for message in detections:
        result = parse(Detection, message.value())
        assert result.audio_source is not None
        seq = audio[(result.audio_source.partition, result.audio_source.offset)]
        assert result.chunk_id == chunk_id_for("mix-1", START_NS + int(seq) * 10**10)
    reasons = sorted(dict(m.headers())["dlq_reason"].decode() for m in dead)
    assert reasons == sorted(expected_reasons.values())
    for message in dead:
        headers = dict(message.headers())
        assert headers["dlq_worker"] == b"mix-worker" and headers["dlq_detail"]
    payloads = {m.value() for m in dead}
    assert bad["garbage"][0] in payloads  # the original payload travels to the DLQ
    assert worker.stats.scored == 3 and worker.stats.dead_lettered == 5


class _FailsOnSilence:
    """Fault injection: a scorer that raises (not returns Rejected) whenever a batch
    holds an all-zero chunk, the way a bug meeting one odd input would. Everything
    else is the real scorer."""

    def __init__(self, scorer: ModelScorer) -> None:
        self._scorer = scorer
        self.failures = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._scorer, name)

    def score(self, pcm: np.ndarray) -> list:
        if np.any(np.all(pcm == 0, axis=1)):
            self.failures += 1
            raise RuntimeError("injected fault: silence")
        return self._scorer.score(pcm)


def test_a_chunk_that_crashes_the_worker_is_isolated_and_dead_lettered(
        kafka_settings: Settings, bundle: Path) -> None:
    """One poison chunk in a batch of eight: the batch fails, is retried, then halved
    until the chunk stands alone; it goes to the DLQ as internal_error with the error,
    the seven others are scored exactly once, and the worker never stops."""
    from soundscape.processors import worker_metrics

    producer = Producer(producer_config(kafka_settings))
    topic = kafka_settings.topics.audio
    sent = []
    for i in range(8):
        audio = np.zeros(320_000, np.float32) if i == 5 else \
            (0.1 * np.sin(np.linspace(0, 3000 + 100 * i, 320_000))).astype(np.float32)
        payload = encode(audio, 32000)
        env = _envelope(payload, station_id="iso-1", chunk_start=START_NS + i * 10**10, seq=i)
        producer.produce(topic, value=payload, key=env.key, headers=env.to_headers())
        sent.append(str(env.chunk_id))
    producer.flush(30)

    scorer = _FailsOnSilence(ModelScorer.load(bundle, kafka_settings))
    settings = kafka_settings.model_copy(update={"worker": kafka_settings.worker.model_copy(
        update={"group_id": f"iso-{topic}", "batch_size": 8})})
    isolations = worker_metrics.ISOLATIONS._value.get()
    worker = InferenceWorker(settings, scorer, worker_id="iso-worker")  # type: ignore[arg-type]
    run_until(worker, max_chunks=8)

    detections = read_all(kafka_settings, kafka_settings.topics.detections, 7)
    dead = read_all(kafka_settings, kafka_settings.topics.audio_dlq, 1)
    scored = Counter(str(parse(Detection, m.value()).chunk_id) for m in detections)
    assert sorted(scored) == sorted(sent[:5] + sent[6:]) and set(scored.values()) == {1}
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["dlq_reason"] == b"internal_error"
    assert b"injected fault: silence" in headers["dlq_detail"]
    assert headers["chunk_id"] == sent[5].encode()
    assert worker.stats.scored == 7 and worker.stats.dead_lettered == 1
    assert scorer.failures >= 3  # the batch, its retry, and the halves that held it
    assert worker_metrics.ISOLATIONS._value.get() > isolations


def test_bench_pipeline_measures_every_chunk_and_cleans_up(
    services: Settings, bundle: Path
) -> None:
    """`soundscape bench pipeline` at a small size: every chunk scored by two workers in
    one group, figures consistent with each other, and its own topics deleted after."""
    from confluent_kafka.admin import AdminClient

    from soundscape.kafka_clients import admin_config
    from soundscape.processors.bench import STATION_CHUNKS_PER_S, bench_pipeline

    figures = bench_pipeline(services, bundle, chunks=12, workers=2, progress=False)
    assert figures.chunks == 12 and figures.workers == 2
    assert figures.chunks_per_s > 0 and figures.seconds > 0
    # as printed: 12.1 chunks/s serves 121 stations (not int(12.1 / 0.1) = 120)
    assert figures.stations_served == int(round(figures.chunks_per_s / STATION_CHUNKS_PER_S, 6))
    latency = figures.latency_ms
    assert 0 <= latency["consumed_to_scored_p50"] <= latency["consumed_to_scored_p95"] \
        <= latency["consumed_to_scored_p99"]
    assert 1 <= figures.batch_sizes_mean <= services.worker.batch_size
    topics = AdminClient(admin_config(services)).list_topics(timeout=30).topics
    assert not [t for t in topics if t.startswith("bench.")], "bench topics left behind"
