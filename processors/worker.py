"""The inference worker: audio chunks in, one detection per chunk out, exactly once.

Each batch is one Kafka transaction: its detections, its dead letters and its consumed
offsets commit together or not at all, so a crash anywhere neither loses nor duplicates a
result (downstream consumers read committed). Batches form by size or time; the next
batch decodes (and its audio statistics are measured) on threads while the current one
is scored. Scaling out is Kafka's job: more workers in the same consumer group share the
partitions.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from soundscape.chunk_signing import SignatureCheck
from soundscape.counters import Counters
from soundscape.dead_letter import DLQ_HEADROOM_BYTES, fit_copy
from soundscape.errors import ServiceError
from soundscape.intake import TimeWindow
from soundscape.kafka_clients import (
    ENVELOPE_OVERHEAD_BYTES,
    admin_config,
    consumer_config,
    message_limits,
    next_offsets,
    producer_config,
    raise_if_fatal,
    SEND_OFFSETS_TIMEOUT_S,
    send_offsets_bounded,
)
from soundscape.logs import get_logger
from soundscape.messages import AudioSource
from soundscape.processors import worker_metrics as metrics
from soundscape.processors.audio_stats import audio_stats
from soundscape.processors.bundle_follower import BundleFollower
from soundscape.processors.chunk_decoder import (
    Decoded,
    Rejected,
    decode_measured,
    describe_exception,
)
from soundscape.processors.results import LabelInfo, build_detection, dlq_headers
from soundscape.processors.scoring import ModelScorer, Scored
from soundscape.settings import Settings
from soundscape.stall_dump import StallDump

log = get_logger(__name__)


@dataclass
class Batch:
    messages: list[Message]
    consumed_at: int
    decoded: list[Future[Decoded | Rejected]]  # decoding on the pool's threads


@dataclass
class WorkerStats(Counters):
    batches: int = 0
    scored: int = 0
    dead_lettered: int = 0
    aborted_batches: int = 0
    bundle_switches: int = 0
    last_loop: float = field(default_factory=time.monotonic)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def shadow_group(settings: Settings, version: str) -> str:
    """The consumer group of workers scoring `version` in shadow: one per candidate, so
    each candidate sees every chunk once, apart from the live workers' progress."""
    return f"{settings.worker.group_id}-shadow-{re.sub(r'[^A-Za-z0-9._-]', '_', version)}"


class InferenceWorker:
    def __init__(
        self,
        settings: Settings,
        scorer: ModelScorer,
        worker_id: str | None = None,
        on_batch_committed: Callable[[int], None] | None = None,
        signatures: SignatureCheck | None = None,
        follower: BundleFollower | None = None,
        shadow: bool = False,
    ) -> None:
        self.settings = settings
        #: Switches to the registry's promoted bundle between batches (None: this bundle only)
        self.follower = follower
        #: Scoring a candidate beside the live workers: its own consumer group, results to
        #: the shadow topic, refused chunks counted but not dead-lettered (the live
        #: workers do that once).
        self.shadow = shadow
        self.group_id = shadow_group(settings, scorer.version) if shadow else settings.worker.group_id
        self.output_topic = settings.topics.shadow_detections if shadow else settings.topics.detections
        #: Chunk signatures checked before scoring (None: not checked, intake.signatures off)
        self.signatures = signatures
        self.scorer = scorer
        self.worker_id = worker_id or default_worker_id()
        self.stats = WorkerStats()
        #: Armed by `soundscape worker` (one faulthandler timer per process): a batch's turn
        #: that overruns writes every thread's stack to the log.
        self.stall_dump = StallDump(0)
        self._on_batch_committed = on_batch_committed
        w = settings.worker
        self._pool = ThreadPoolExecutor(max_workers=w.decode_threads, thread_name_prefix="decode")
        self._pending: Batch | None = None
        # Rebound, never changed in place: /healthz reads it from the server's thread.
        self._assigned: frozenset[tuple[str, int]] = frozenset()
        self._failures = 0
        self._max_payload = settings.kafka.max_message_bytes
        #: What the DLQ topic takes; read from the brokers at start (a hand-made topic
        #: may take less than `infra topics` would have set).
        self._dlq_limit = self._max_payload + ENVELOPE_OVERHEAD_BYTES + DLQ_HEADROOM_BYTES
        self._times = TimeWindow.from_settings(settings.intake)
        self.consumer = Consumer(
            consumer_config(
                settings,
                self.group_id,
                **{
                    "max.poll.interval.ms": w.max_poll_interval_ms,
                    # Heartbeats come from librdkafka's own thread, so long batches do
                    # not need a long session; a short one moves a crashed worker's
                    # partitions sooner.
                    "session.timeout.ms": w.session_timeout_ms,
                    "client.id": f"worker-{self.worker_id}",
                },
            )
        )
        self.producer = Producer(
            producer_config(
                settings,
                **{
                    # Stable per worker slot: a restarted worker's init_transactions fences
                    # its predecessor and aborts the transaction it left open at once, so
                    # neither read-committed readers nor the partitions' next owner (whose
                    # offset fetch waits on pending transactional commits) wait out
                    # transaction.timeout.ms. Two live workers must not share an id.
                    "transactional.id": f"{self.group_id}-{self.worker_id}",
                    "transaction.timeout.ms": w.transaction_timeout_ms,
                    "message.max.bytes": self._dlq_limit,
                    "linger.ms": 2,
                },
            )
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def run(self, stop: threading.Event, max_chunks: int | None = None) -> WorkerStats:
        """Work until `stop` is set (or max_chunks handled); then finish the batch in hand."""
        topic = self.settings.topics.audio
        self.producer.init_transactions(30)
        self._read_dlq_limit()
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        log.info("worker started", worker=self.worker_id, topic=topic, output=self.output_topic,
                 bundle=self.scorer.version, batch_size=self.settings.worker.batch_size,
                 follows_registry=self.follower is not None, shadow=self.shadow)
        metrics.BUNDLE.labels(self.scorer.version).set(1)
        last_lag = 0.0
        try:
            while not stop.is_set():
                self.stall_dump.turn()
                self.stats.last_loop = time.monotonic()
                self._switch_if_promoted()
                batch = self._poll_batch()
                if not self._finish_pending(following=batch):
                    batch = None  # rewound with the aborted batch: Kafka hands it back
                self._pending = batch
                if max_chunks is not None and self.stats.scored + self.stats.dead_lettered >= max_chunks:
                    break
                if time.monotonic() - last_lag > 10:
                    self._update_lag()
                    last_lag = time.monotonic()
            self._finish_pending()
        finally:
            self.stall_dump.stop()
            self.close()
        log.info("worker stopped", worker=self.worker_id, batches=self.stats.batches,
                 scored=self.stats.scored, dead_lettered=self.stats.dead_lettered)
        return self.stats

    def _switch_if_promoted(self) -> None:
        """Between batches: take the follower's newly loaded bundle. The batch in hand was
        decoded for the old bundle, so the old bundle scores and commits it first."""
        new = self.follower.take() if self.follower is not None else None
        if new is None:
            return
        self._finish_pending()
        old, self.scorer = self.scorer, new
        self.stats.bundle_switches += 1
        metrics.BUNDLE_SWITCHES.inc()
        metrics.BUNDLE.labels(old.version).set(0)
        metrics.BUNDLE.labels(new.version).set(1)
        log.info("bundle switched between batches", version=new.version, previous=old.version,
                 batches_before=self.stats.batches)

    def close(self) -> None:
        """Leave the group (partitions move at once) and release threads."""
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass
        self._pool.shutdown(wait=True)

    def health(self) -> dict[str, Any]:
        stale = time.monotonic() - self.stats.last_loop
        limit = max(30.0, self.settings.worker.max_poll_interval_ms / 1000 / 2)
        return {
            "healthy": stale < limit,
            "worker": self.worker_id,
            "bundle": self.scorer.version,
            "shadow": self.shadow,
            **(self.follower.health() if self.follower is not None else {}),
            "seconds_since_loop": round(stale, 1),
            "partitions": sorted(p for _topic, p in self._assigned),
            "batches": self.stats.batches,
            "scored": self.stats.scored,
            "dead_lettered": self.stats.dead_lettered,
        }

    # ---- batching ----------------------------------------------------------------------
    def _poll_batch(self) -> Batch | None:
        w = self.settings.worker
        messages = self.consumer.consume(num_messages=w.batch_size, timeout=w.batch_timeout_ms / 1000)
        consumed_at = time.time_ns()
        good = []
        for msg in messages:
            err = msg.error()
            if err is None:
                if (msg.topic(), msg.partition()) in self._assigned:
                    good.append(msg)
                # else: fetched before a revoke in this same call; the new owner reads it
            elif err.code() != KafkaError._PARTITION_EOF:
                raise_if_fatal(err)
                log.warning("consume error", error=str(err))
        if not good:
            return None
        limit = self._max_payload
        rate, min_rate = self.scorer.sample_rate, self.scorer.min_source_rate
        frontend = self.settings.frontend
        decoded = [
            self._pool.submit(decode_measured, m.headers(), m.value(), m.key(), limit,
                              target_rate=rate, min_rate=min_rate,
                              length_tolerance_ms=frontend.length_tolerance_ms,
                              max_nonfinite_fraction=frontend.max_nonfinite_fraction,
                              times=self._times, signatures=self.signatures)
            for m in good
        ]
        return Batch(good, consumed_at, decoded)

    # ---- one batch, one transaction ----------------------------------------------------
    def _finish_pending(self, following: Batch | None = None) -> bool:
        """Score and commit the batch in hand. On a failed transaction: abort, rewind to
        the batch's first offsets (and those of `following`, already fetched) and return
        False, so both are fetched again and redone exactly once."""
        batch, self._pending = self._pending, None
        if batch is None:
            return True
        try:
            self._process_isolating(batch)
            self._failures = 0
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.fatal():
                raise
            self._failures += 1
            log.warning("transaction failed; aborted, batch will be redone",
                        failures=self._failures, error=str(exc))
            self._abort([batch] + ([following] if following else []))
            if self._failures >= 5:
                raise RuntimeError("five transactions failed in a row; giving up") from exc
            return False

    def _process_isolating(self, batch: Batch, poison: str | None = None) -> None:
        """Process a batch; a failure that is not Kafka's (a bug meeting strange input)
        is retried once, then the batch is halved until the chunk that causes it stands
        alone, and that chunk is dead-lettered `internal_error`. The halves commit one
        after the other, in offset order, each in its own transaction."""
        try:
            self._process(batch, poison)
            return
        except (KafkaException, ServiceError):  # Kafka's, not the batch's
            raise
        except Exception as exc:  # noqa: BLE001 - isolate it rather than crash-loop
            first = exc
        self._abort_quietly()
        if poison is not None:
            raise RuntimeError("dead-lettering a chunk failed") from first
        log.warning("batch failed outside Kafka; retrying it once", chunks=len(batch.messages),
                    error=describe_exception(first))
        try:
            self._process(batch)
            return
        except (KafkaException, ServiceError):
            raise
        except Exception as exc:  # noqa: BLE001
            again = exc
        self._abort_quietly()
        metrics.ISOLATIONS.inc()
        if len(batch.messages) == 1:
            log.error("chunk fails every time; dead-lettering it", error=describe_exception(again))
            self._process_isolating(batch, poison=describe_exception(again))
            return
        middle = len(batch.messages) // 2
        log.warning("batch failed twice; splitting it to find the chunk",
                    chunks=len(batch.messages), error=describe_exception(again))
        for half in (slice(0, middle), slice(middle, None)):
            self._process_isolating(Batch(batch.messages[half], batch.consumed_at,
                                          batch.decoded[half]))

    def _abort_quietly(self) -> None:
        try:
            self.producer.abort_transaction(30)
        except KafkaException:
            pass  # none open: the failure came before it began

    def _process(self, batch: Batch, poison: str | None = None) -> None:
        """`poison`: the batch is one chunk that fails every time; dead-letter it."""
        results = [_outcome(future) for future in batch.decoded]
        if poison is not None:
            results = [Rejected("internal_error", poison)]
        good = [(m, r) for m, r in zip(batch.messages, results, strict=True) if isinstance(r, Decoded)]
        outcomes = self.scorer.score(np.stack([r.pcm for _, r in good])) if good else []
        scored_at = time.time_ns()
        if outcomes:
            for stage, ms in outcomes_timings(outcomes).items():
                metrics.STAGE.labels(stage).observe(ms / 1000)

        began = time.monotonic()
        self.producer.begin_transaction()
        dlq = 0
        for msg, result in zip(batch.messages, results, strict=True):
            if isinstance(result, Rejected):
                self._dead_letter(msg, result)
                dlq += 1
        for (msg, decoded), outcome in zip(good, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                self._dead_letter(msg, outcome)
                dlq += 1
                continue
            try:
                value = self._detection_bytes(batch, msg, decoded, outcome, scored_at)
            except Exception as exc:  # noqa: BLE001 - this chunk's fault: DLQ it, go on
                self._dead_letter(msg, Rejected("internal_error", describe_exception(exc)))
                dlq += 1
                continue
            self.producer.produce(self.output_topic, key=msg.key(), value=value)
            metrics.END_TO_END.observe(max(0, scored_at - decoded.envelope.published_at) / 1e9)
        produced = time.monotonic()
        send_offsets_bounded(self.producer, next_offsets(batch.messages),
                             self.consumer.consumer_group_metadata(),
                             SEND_OFFSETS_TIMEOUT_S)
        offsets_sent = time.monotonic()
        self.producer.commit_transaction(60)
        committed = time.monotonic()
        phases = {"produce_s": round(produced - began, 3),
                  "send_offsets_s": round(offsets_sent - produced, 3),
                  "commit_s": round(committed - offsets_sent, 3)}
        metrics.TRANSACTION.observe(committed - began)
        # Slow transactions are what a stalled pipeline shows first; say where the time went.
        (log.warning if committed - began > 10 else log.debug)(
            "batch committed", chunks=len(batch.messages), **phases)

        for _, decoded in good:
            _count_repairs(decoded)
        scored = len(batch.messages) - dlq
        self.stats.batches += 1
        self.stats.scored += scored
        self.stats.dead_lettered += dlq
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(len(batch.messages))
        metrics.CHUNKS.labels("scored").inc(scored)
        metrics.CHUNKS.labels("dead_lettered").inc(dlq)
        if self._on_batch_committed is not None:
            self._on_batch_committed(len(batch.messages))

    def _detection_bytes(self, batch: Batch, msg: Message, decoded: Decoded, outcome: Scored,
                         scored_at: int) -> bytes:
        detection = build_detection(
            envelope=decoded.envelope,
            probabilities=outcome.probabilities,
            labels=self.scorer.labels,
            thresholds=self.scorer.thresholds,
            k=self.settings.worker.top_k,
            bundle_version=self.scorer.version,
            audio=decoded.audio or audio_stats(decoded.pcm, self.scorer.sample_rate),
            consumed_at=batch.consumed_at,
            scored_at=scored_at,
            decode_ms=decoded.decode_ms,
            features_ms=outcome.features_ms,
            inference_ms=outcome.inference_ms,
            branch_ms=outcome.branch_ms,
            batch_size=len(batch.messages),
            worker_id=self.worker_id,
            windows=outcome.windows,
            label_info=self._label_info(decoded) if outcome.windows is not None else None,
            audio_source=AudioSource(partition=msg.partition(), offset=msg.offset()),
        )
        return detection.to_bytes()

    def _label_info(self, decoded: Decoded) -> LabelInfo:
        w = self.settings.worker
        in_range = (None if w.location_filter == "off" else
                    self.scorer.in_range(decoded.envelope.station_id, decoded.envelope.chunk_start))
        return LabelInfo(self.scorer.common_names, in_range, w.location_filter, w.window_top_k,
                         w.keep_embedding)

    def _dead_letter(self, msg: Message, rejected: Rejected) -> None:
        if self.shadow:  # the live workers dead-letter it; a candidate only counts it
            metrics.DLQ.labels(rejected.reason).inc()
            return
        headers = dlq_headers(
            msg.headers(), reason=rejected.reason, detail=rejected.detail,
            worker_id=self.worker_id, topic=msg.topic(), partition=msg.partition(),
            offset=msg.offset(),
        )
        value, headers = fit_copy(msg.key(), msg.value(), headers, self._dlq_limit)
        self.producer.produce(self.settings.topics.audio_dlq, key=msg.key(), value=value,
                              headers=headers)
        metrics.DLQ.labels(rejected.reason).inc()
        log.info("chunk dead-lettered", reason=rejected.reason, detail=rejected.detail[:200],
                 source=f"{msg.topic()}/{msg.partition()}/{msg.offset()}")

    def _read_dlq_limit(self) -> None:
        """Size dead-letter copies to what the DLQ topic really takes."""
        from confluent_kafka.admin import AdminClient

        from soundscape.errors import ServiceError

        topic = self.settings.topics.audio_dlq
        try:
            limits = message_limits(AdminClient(admin_config(self.settings)), [topic], 10)
        except (ServiceError, KafkaException) as exc:
            log.warning("could not read the DLQ topic's size limit; assuming the default",
                        topic=topic, error=str(exc))
            return
        if topic in limits and limits[topic] < self._dlq_limit:
            log.warning("the DLQ topic takes less than a chunk plus its reasons; large "
                        "dead-lettered chunks will be copied without their audio",
                        topic=topic, limit=limits[topic],
                        hint="run `soundscape infra topics` to give it room")
            self._dlq_limit = limits[topic]

    def _abort(self, batches: list[Batch]) -> None:
        """Abort the transaction and rewind to the batches' first offsets to redo them."""
        try:
            self.producer.abort_transaction(30)
        except KafkaException as exc:
            log.warning("abort failed", error=str(exc))
        self.stats.aborted_batches += 1
        metrics.ABORTS.inc()
        firsts: dict[tuple[str, int], int] = {}
        for msg in (m for batch in batches for m in batch.messages):
            key = (msg.topic(), msg.partition())
            firsts[key] = min(firsts.get(key, msg.offset()), msg.offset())
        for (topic, partition), offset in firsts.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:
                pass  # no longer ours: the new owner starts from the committed offset

    # ---- rebalances --------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = self._assigned | {(p.topic, p.partition) for p in partitions}
        log.info("partitions assigned", partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish the batch in hand before the partitions move, so nothing is redone."""
        log.info("partitions revoked", partitions=[p.partition for p in partitions])
        try:
            self._finish_pending()
        except KafkaException as exc:
            log.warning("could not finish batch at revoke; it will be redone", error=str(exc))
        finally:
            self._assigned = self._assigned - {(p.topic, p.partition) for p in partitions}

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions lost (session timeout): our transaction would be fenced; drop the batch."""
        self._assigned = self._assigned - {(p.topic, p.partition) for p in partitions}
        batch, self._pending = self._pending, None
        if batch is not None:
            log.warning("partitions lost; dropping batch in hand", chunks=len(batch.messages))

    def _update_lag(self) -> None:
        try:
            assignment = self.consumer.assignment()
            positions = self.consumer.position(assignment)
            for tp in positions:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=2, cached=True)
                if tp.offset >= 0 and high >= 0:
                    metrics.LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException:
            pass


def _outcome(future: Future[Decoded | Rejected]) -> Decoded | Rejected:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - decode_chunk does not raise; if it ever does
        return Rejected("internal_error", describe_exception(exc))


def _count_repairs(decoded: Decoded) -> None:
    repairs = decoded.repairs
    if repairs:
        for kind in ("padded_frames", "trimmed_frames", "zeroed_samples", "clipped_samples"):
            count = getattr(repairs, kind)
            if count:
                metrics.REPAIRS.labels(kind).inc(count)
                metrics.REPAIRED_CHUNKS.labels(kind).inc()


def outcomes_timings(outcomes: list[Scored | Rejected]) -> dict[str, float]:
    """The batch's per-stage timings (ms), from its first scored item."""
    for outcome in outcomes:
        if isinstance(outcome, Scored):
            return outcome.branch_ms
    return {}
