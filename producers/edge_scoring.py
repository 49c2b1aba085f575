"""Scoring on the station (`station.edge_bundle`): each chunk's PCM through a bundle on
the station's own CPU, the result published as an edge result.

For stations that must alert while the network is down, and for links too thin for the
audio (`station.send_audio` false). The bundle is loaded and checked at start, as a
worker checks it (`soundscape.fusion`: hashes, shapes, every graph): a bad bundle stops
the station before it records anything. Scoring runs on a thread of its own, on the CPU
with `edge_threads` threads (one by default: a Pi's other cores stay with capture), at
a lower priority than capture (nice +10 on Linux). Capture never waits for it: a chunk
is handed over only when the scorer has room (one chunk waiting, one being scored);
otherwise it is not scored, and counted (`edge_skipped`), its audio kept as always.

A result is the same message as a worker's (soundscape.messages.Detection) with
`worker_id` `edge:<station_id>` and `batch_size` 1, keyed by station id on
`topics.edge_detections`, and signed with the station's key (`signer` and `signature`
headers over the whole value; soundscape.chunk_signing) when it has one. Stage times:
`captured_at` is the chunk's; `published_at` and `consumed_at` are when scoring began
(the chunk went to no broker first), `scored_at` when it ended, `decode_ms` 0 (PCM in).
Each result is kept on disk until Kafka acknowledges it (producers/edge_outbox.py), so
results waiting out an outage survive a restart of the station and go first at the next
start; the producer itself waits with no timeout while the broker is unreachable.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from soundscape.audio_stats import audio_stats
from soundscape.blas_threads import limit_blas_threads
from soundscape.bundle import BundleError, load_bundle
from soundscape.chunk_signing import ChunkSigner, result_headers
from soundscape.detection_message import (
    above_threshold,
    chunk_result,
    edge_worker_id,
    stage_times,
    top_k,
)
from soundscape.envelope import ChunkEnvelope
from soundscape.errors import UserError
from soundscape.fusion import FusionModel
from soundscape.kafka_clients import producer_config
from soundscape.logs import get_logger
from soundscape.messages import Detection
from soundscape.producers.delivery import BrokerWatch, patient_overrides
from soundscape.producers.edge_outbox import EdgeOutbox, PendingResult
from soundscape.settings import Settings

log = get_logger(__name__)

#: Stages of FusionModel's timings that make the features (as the worker splits them).
FEATURE_STAGES = ("frontend", "embedder")
#: Niceness of the scoring thread: capture and the forwarder win any contention.
SCORER_NICE = 10


@dataclass(frozen=True)
class EdgeResult:
    detection: Detection
    value: bytes
    headers: list[tuple[str, bytes]]


class EdgeModel:
    """A fusion bundle on the CPU, one chunk at a time: PCM in, a (signed) result out."""

    def __init__(self, bundle: Path, station_id: str, settings: Settings, *,
                 threads: int = 1, signer: ChunkSigner | None = None) -> None:
        try:
            loaded = load_bundle(bundle)
            if loaded.kind != "fusion":
                raise UserError(f"{bundle}: a {loaded.kind} bundle; edge scoring runs fusion "
                                "bundles (with a front-end)")
            self.model = FusionModel(
                loaded, device="cpu", max_batch=1, intra_op_threads=threads,
                frontend_threads=threads,
                length_tolerance_ms=settings.frontend.length_tolerance_ms,
                max_nonfinite_fraction=settings.frontend.max_nonfinite_fraction,
                frontend_path=settings.frontend.frontend_path)
            if not self.model.has_frontend:
                raise UserError(f"{bundle}: the bundle has no front-end graph; a station "
                                "scores PCM")
        except BundleError as exc:
            raise UserError(f"station.edge_bundle is unusable: {exc}",
                            hint="verify it with `soundscape models verify`; an int8 variant "
                                 "is made by `soundscape models quantize`") from None
        except UserError as exc:
            raise UserError(f"station.edge_bundle is unusable: {exc}", hint=exc.hint) from None
        self.blas_threads = limit_blas_threads(threads)
        self.station_id = station_id
        self.threads = threads
        self.signer = signer
        self.version = self.model.version
        self.labels = list(self.model.labels)
        self.thresholds = loaded.thresholds(settings.worker.threshold)
        self.top_k = settings.worker.top_k
        self.worker_id = edge_worker_id(station_id)

    def score(self, envelope: ChunkEnvelope, pcm: np.ndarray) -> EdgeResult | str:
        """The chunk's result, or why it was refused (the front-end's per-chunk checks)."""
        began = time.time_ns()
        scored = self.model.score_audio(np.asarray(pcm, dtype=np.float32)[None])
        if scored.errors:
            return scored.errors[0]
        probabilities = np.clip(np.nan_to_num(scored.probabilities[0], nan=0.0), 0.0, 1.0)
        timings_ms = {stage: seconds * 1e3 for stage, seconds in scored.timings.items()}
        features_ms = sum(ms for stage, ms in timings_ms.items() if stage in FEATURE_STAGES)
        timing = stage_times(envelope.with_published_at(began), consumed_at=began,
                             scored_at=time.time_ns(), decode_ms=0.0, features_ms=features_ms,
                             inference_ms=sum(timings_ms.values()) - features_ms,
                             branch_ms=timings_ms)
        detection = chunk_result(
            envelope, bundle_version=self.version, top=top_k(probabilities, self.labels, self.top_k),
            found=above_threshold(probabilities, self.labels, self.thresholds),
            audio=audio_stats(pcm, envelope.sample_rate), timing=timing, batch_size=1,
            worker_id=self.worker_id)
        value = detection.to_bytes()
        return EdgeResult(detection, value, result_headers(self.signer, value))


class EdgeScorer:
    """The station's scoring thread and the producer of its results."""

    def __init__(self, settings: Settings, model: EdgeModel,
                 cpu_seconds: dict[str, float], outbox: EdgeOutbox | None = None) -> None:
        self.model = model
        self.outbox = outbox
        self.topic = settings.topics.edge_detections
        self.scored = 0
        self.skipped = 0
        self.refused = 0
        self.delivered = 0
        self.delivery_failures = 0
        self.resent = 0
        self.outbox_failures = 0
        self.watch = BrokerWatch("edge results")
        self._cpu = cpu_seconds
        self._cpu.setdefault("score", 0.0)
        self._queue: queue.Queue[tuple[ChunkEnvelope, np.ndarray]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._producer = Producer(producer_config(
            settings, **patient_overrides(settings.station.retry_backoff_max_s, self.watch)))
        self._thread = threading.Thread(target=self._run, name="edge-scorer", daemon=True)

    def start(self) -> EdgeScorer:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def offer(self, envelope: ChunkEnvelope, pcm: np.ndarray) -> bool:
        """Hand a chunk over without waiting; False (counted) when the scorer is behind."""
        try:
            self._queue.put_nowait((envelope, pcm))
            return True
        except queue.Full:
            self.skipped += 1
            log.warning("edge scoring behind: chunk not scored on the station",
                        chunk_start=envelope.chunk_start, skipped_total=self.skipped)
            return False

    def stop(self, flush_timeout_s: float = 10.0) -> None:
        """Score what was handed over, then give the results `flush_timeout_s` to go."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)
        left = self._producer.flush(flush_timeout_s)
        if left and self.outbox is not None:
            log.warning("edge results not delivered before stopping; they stay on disk and "
                        "go at the next start", results=left, on_disk=self.outbox.depth)
        elif left:
            log.warning("edge results not delivered before stopping; they are lost",
                        results=left)

    def snapshot(self) -> dict[str, Any]:
        return {"edge_scored": self.scored, "edge_skipped": self.skipped,
                "edge_refused": self.refused, "edge_delivered": self.delivered,
                "edge_delivery_failures": self.delivery_failures,
                "edge_pending": self.outbox.depth if self.outbox is not None else 0,
                "edge_dropped": self.outbox.dropped if self.outbox is not None else 0,
                "edge_resent": self.resent}

    def _run(self) -> None:
        _lower_priority()
        self._send_left_over()
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                envelope, pcm = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._producer.poll(0)
                continue
            started = time.thread_time()
            try:
                self._score(envelope, pcm)
            except Exception:  # noqa: BLE001 - a failed result must not stop the station
                self.refused += 1
                log.exception("edge scoring failed", chunk_start=envelope.chunk_start)
            self._cpu["score"] += time.thread_time() - started
            self._producer.poll(0)

    def _score(self, envelope: ChunkEnvelope, pcm: np.ndarray) -> None:
        result = self.model.score(envelope, pcm)
        if isinstance(result, str):
            self.refused += 1
            log.warning("chunk refused by edge scoring", chunk_start=envelope.chunk_start,
                        reason=result)
            return
        pending = PendingResult(envelope.chunk_start, envelope.station_id.encode(),
                                result.value, result.headers)
        if self.outbox is not None:
            try:
                self.outbox.put(pending)
            except OSError as exc:  # a full disk: the result still goes, from memory only
                self.outbox_failures += 1
                log.warning("edge result not kept on disk; sent from memory only",
                            chunk_start=envelope.chunk_start, error=str(exc))
        self._produce(pending)
        self.scored += 1

    def _send_left_over(self) -> None:
        """The results a previous run left unacknowledged, oldest first, before new ones
        (on this thread: a long outage may make it wait, capture never does)."""
        if self.outbox is None:
            return
        pending = self.outbox.pending()
        if pending:
            log.info("sending edge results left from before", results=len(pending),
                     oldest_chunk_start=pending[0].chunk_start)
        for result in pending:
            if not self._produce(result):
                return  # stopping: the rest stay on disk for the next start
            self.resent += 1

    def _produce(self, result: PendingResult) -> bool:
        """Hand `result` to the producer; False if the station stops while its queue is
        full (a long outage; the result is on disk)."""
        done = functools.partial(self._on_delivery, result.chunk_start)
        while True:
            try:
                self._producer.produce(self.topic, key=result.key, value=result.value,
                                       headers=result.headers, on_delivery=done)
                return True
            except BufferError:  # the producer's queue is full (a long outage): wait
                if self._stop.is_set():
                    return False
                self._producer.poll(1.0)

    def _on_delivery(self, chunk_start: int, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
            self.watch.acked()
            if self.outbox is not None:
                self.outbox.done(chunk_start)
        else:
            self.delivery_failures += 1
            log.warning("edge result not delivered", error=err.str())


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SCORER_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority then
        pass
