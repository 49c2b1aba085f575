"""`soundscape bench secure-pipeline`: what TLS, SCRAM and signed chunks cost the worker
and the sink together (issue 18's goal: under 5 %).

Each round publishes the same audio to topics of its own twice and times a worker and a
sink draining it into a scratch schema, from the worker's first scored chunk to the
sink's last stored one (chunks/s over the chunks after that first batch):
- plain: loopback PLAINTEXT, unsigned chunks, no signature check;
- secure: the stations' SASL_SSL listener (TLS + SCRAM-SHA-512) with a worker and a sink
  principal of their own (`services add`'s ACLs), every chunk signed by its station and
  checked by the worker (`intake.signatures = require`).
Modes alternate within each round, so both see the same machine; the medians are compared.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

from tqdm import tqdm

from soundscape.app.bundle_registration import bundle_record
from soundscape.app.enrolment import as_principal
from soundscape.bundle import load_bundle
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.chunk_signing import ChunkSigner, SignatureCheck, SignerKey, new_private_key_text
from soundscape.envelope import ChunkEnvelope
from soundscape.infra.kafka import principals
from soundscape.kafka_topics import delete_topics, ensure_topics, scratch_topics
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.bundle_registry import register_bundle
from soundscape.sinks.service import SinkService
from soundscape.synthetic.chunks import generated_chunks

_START_NS = 1_767_225_600 * 1_000_000_000


def bench_secure_pipeline(settings: Settings, bundle: Path, chunks: int = 200, rounds: int = 3,
                          progress: bool = True) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    audio = [payload for _, payload in generated_chunks(chunks, 1, _START_NS)]
    scorer = ModelScorer.load(bundle, settings)
    seconds: dict[str, list[float]] = {"plain": [], "secure": []}
    with migrate.scratch_schema(settings, schema):
        register_bundle(settings, bundle_record(load_bundle(bundle)), schema=schema)
        bar = tqdm(total=2 * rounds, desc="rounds", unit="run", disable=not progress)
        for i in range(rounds):
            for mode in ("plain", "secure"):
                seconds[mode].append(_round(settings, f"{run}{mode[0]}{i}", schema, scorer,
                                            audio, secure=mode == "secure"))
                bar.update()
        bar.close()
    plain, secure = median(seconds["plain"]), median(seconds["secure"])
    return {
        "chunks": chunks, "rounds": rounds, "bundle": scorer.version,
        "plain_chunks_per_s": round(chunks / plain, 2),
        "secure_chunks_per_s": round(chunks / secure, 2),
        "secure_cost_percent": round((secure / plain - 1) * 100, 1),
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in seconds.items()},
    }


def _round(base: Settings, tag: str, schema: str, scorer: ModelScorer, audio: list[bytes],
           secure: bool) -> float:
    settings = scratch_topics(base, tag)
    settings = settings.model_copy(update={
        # Small batches: the timed span starts at the first scored batch.
        "worker": settings.worker.model_copy(update={"group_id": f"bench-w-{tag}",
                                                     "batch_size": 8}),
        "sink": settings.sink.model_copy(update={"group_id": f"bench-s-{tag}"})})
    ensure_topics(settings)
    station = f"bench-{tag}"
    signer = ChunkSigner.from_text(new_private_key_text(), station)
    keys = {station: SignerKey(station, signer.key.public_key())}
    publisher = ChunkPublisher(settings)
    for i, payload in enumerate(audio):
        envelope = ChunkEnvelope.for_payload(
            payload, station_id=station, chunk_start=_START_NS + i * 10**10, sample_rate=32_000,
            seq=i, captured_at=_START_NS + i * 10**10, source="live")
        publisher.publish(signer.sign(envelope) if secure else envelope, payload)
    publisher.flush()
    users = [f"worker.{tag}", f"sink.{tag}"]
    try:
        as_worker, as_sink = settings, settings
        check = None
        if secure:
            as_worker, as_sink = (_principal(settings, role, user)
                                  for role, user in zip(("worker", "sink"), users, strict=True))
            check = SignatureCheck(keys.get, require=True)
        return _drain(as_worker, as_sink, schema, scorer, len(audio), check)
    finally:
        if secure:
            for user in users:
                principals.revoke_principal(settings, user)
        delete_topics(settings, settings.topics.all_names())


def _principal(settings: Settings, role: str, user: str) -> Settings:
    password = secrets.token_urlsafe(24)
    principals.add_principal(settings, role, user, password)
    return as_principal(settings, user, password)


def _drain(as_worker: Settings, as_sink: Settings, schema: str, scorer: ModelScorer,
           count: int, check: SignatureCheck | None) -> float:
    worker = InferenceWorker(as_worker, scorer, worker_id="bench-1", signatures=check)
    sink = SinkService(as_sink, schema=schema)
    stop = threading.Event()
    threads = [threading.Thread(target=worker.run, args=(stop,), name="bench-worker"),
               threading.Thread(target=sink.run, name="bench-sink")]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 600
        while worker.stats.scored == 0:
            _alive(threads, deadline, worker, sink)
        started, first = time.perf_counter(), worker.stats.scored
        while sink.stats.stored < count:
            _alive(threads, deadline, worker, sink)
        # seconds per `count` chunks, from the chunks scored after the first batch
        return (time.perf_counter() - started) * count / max(count - first, 1)
    finally:
        stop.set()
        sink.request_stop()
        for thread in threads:
            thread.join(60)


def _alive(threads: list[threading.Thread], deadline: float, worker: InferenceWorker,
           sink: SinkService) -> None:
    if time.monotonic() > deadline or not all(t.is_alive() for t in threads):
        raise RuntimeError(f"the pipeline stalled: worker {worker.stats}, sink {sink.health()}")
    if worker.stats.dead_lettered or sink.stats.dead_lettered:
        raise RuntimeError(f"chunks were refused: worker {worker.stats}, sink {sink.health()}")
    time.sleep(0.02)

