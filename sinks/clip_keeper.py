"""The clip keeper: the audio of chunks worth listening to, kept after Kafka drops it.

    detections (read committed) -> choose -> fetch the chunk from the audio topic at the
    offset its result names -> write the file -> INSERT the clip row -> commit offsets

- A chunk is kept when one of its detections is at least `clips.min_confidence`
  probable, and a `clips.negative_sample_rate` share of chunks without any detection is
  kept as negatives (chosen by chunk id: the same chunks on every replay).
- Offsets are committed only after the files are on disk (fsync) and their rows are in
  PostgreSQL, so a crash anywhere redelivers the batch; the file is rewritten and the
  row, keyed by chunk_id, is not stored twice. Nothing kept is lost, nothing doubled.
- The audio must still be in the topic (its retention): a chunk whose audio is gone is
  counted (`expired`), never invented. The fetched chunk's envelope must name the
  result's chunk, or the clip is refused (`mismatched`).
- Past `clips.max_bytes`, the oldest recordings go first; a clip somebody reviewed is
  never evicted. Eviction marks the row (the writer role may not delete) and removes
  the file.
- Database down: the batch is retried with backoff and nothing is committed.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from soundscape.counters import Counters
from soundscape.envelope import ChunkEnvelope, EnvelopeError
from soundscape.kafka_clients import consumer_config, next_offsets, without_errors
from soundscape.logs import get_logger
from soundscape.messages import Detection, MessageError, parse
from soundscape.settings import Settings
from soundscape.sinks import clip_metrics as metrics
from soundscape.sinks.clip_files import (
    Reason,
    clips_dir,
    keep_reason,
    relative_path,
    remove_clip,
    write_clip,
)
from soundscape.sinks.connection import connect

log = get_logger(__name__)

#: How long one chunk's fetch from the audio topic may take before it counts as gone.
FETCH_TIMEOUT_S = 10.0
#: How often the live total is read back from the database (between, it is estimated).
TOTAL_REFRESH_S = 30.0


@dataclass
class ClipStats(Counters):
    consumed: int = 0
    kept_detection: int = 0
    kept_negative: int = 0
    already_kept: int = 0
    skipped: int = 0
    expired: int = 0
    mismatched: int = 0
    malformed: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    batches: int = 0
    committed: int = 0
    database_retries: int = 0

    @property
    def kept(self) -> int:
        return self.kept_detection + self.kept_negative


@dataclass(frozen=True, slots=True)
class Wanted:
    detection: Detection
    reason: Reason


@dataclass(frozen=True, slots=True)
class KeptClip:
    chunk_id: uuid.UUID
    chunk_start: datetime
    station_id: str
    path: str
    size: int
    codec: str
    reason: Reason
    top_label: str
    top_probability: float


@dataclass
class ClipKeeper:
    """A service for soundscape.service_runner: run() until request_stop()."""

    settings: Settings
    group_id: str | None = None
    name: str = "clips"
    stats: ClipStats = field(default_factory=ClipStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _database_up: bool = True
    _live_bytes: int | None = None
    _total_read_at: float = 0.0
    _conn: psycopg.Connection[Any] | None = None

    @property
    def root(self) -> Path:
        return clips_dir(self.settings)

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": self._database_up, "database": "up" if self._database_up else "down",
                "live_bytes": self._live_bytes, "quota_bytes": self.settings.clips.max_bytes,
                **self.stats.as_dict()}

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> ClipStats:
        clips, topics = self.settings.clips, self.settings.topics
        group = self.group_id or clips.group_id
        self.root.mkdir(parents=True, exist_ok=True)
        consumer = Consumer(consumer_config(self.settings, group))
        # Reads single chunks by offset (assign, never subscribe, never commits); 'error'
        # makes an offset the topic no longer holds an answer, not a jump elsewhere.
        fetcher = Consumer(consumer_config(self.settings, f"{group}-audio",
                                           **{"auto.offset.reset": "error"}))
        consumer.subscribe([topics.detections])
        log.info("clip keeper started", folder=str(self.root), group=group,
                 min_confidence=clips.min_confidence, quota_bytes=clips.max_bytes)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(clips.batch_size, clips.batch_timeout_ms / 1000)
                if not messages:
                    continue
                if self._handle(messages, fetcher):
                    consumer.commit(offsets=next_offsets(messages), asynchronous=False)
                    self.stats.batches += 1
                    self.stats.committed += len(messages)
        finally:
            consumer.close()
            fetcher.close()
            self._disconnect()
            log.info("clip keeper stopped", **self.stats.as_dict())
        return self.stats

    def _handle(self, messages: list[Message], fetcher: Consumer) -> bool:
        """Keep what the batch asks for; False when stopped before it was stored."""
        wanted: list[Wanted] = []
        for msg in without_errors(messages):
            self.stats.consumed += 1
            try:
                detection = parse(Detection, msg.value())
            except MessageError as exc:  # the sink dead-letters it; here it is not a clip
                self.stats.malformed += 1
                log.debug("detection not parsed", error=str(exc)[:200])
                continue
            reason = keep_reason(detection, self.settings.clips.min_confidence,
                                 self.settings.clips.negative_sample_rate)
            if reason is None or detection.audio_source is None:
                self.stats.skipped += 1
                continue
            wanted.append(Wanted(detection, reason))
        kept = [clip for item in sorted(wanted, key=_audio_position)
                if (clip := self._fetch_and_write(fetcher, item)) is not None]
        if kept and not self._store(kept):
            return False
        self._evict_if_over()
        return True

    # ---- audio ----------------------------------------------------------------------------
    def _fetch_and_write(self, fetcher: Consumer, item: Wanted) -> KeptClip | None:
        detection, source = item.detection, item.detection.audio_source
        assert source is not None
        msg = _fetch(fetcher, self.settings.topics.audio, source.partition, source.offset)
        if msg is None:
            self.stats.expired += 1
            metrics.CLIPS.labels("expired").inc()
            log.info("chunk audio no longer in the topic", chunk_id=str(detection.chunk_id),
                     partition=source.partition, offset=source.offset)
            return None
        try:
            envelope = ChunkEnvelope.from_headers(msg.headers(), msg.value(), msg.key())
        except EnvelopeError as exc:
            envelope, problem = None, str(exc)
        else:
            problem = "" if envelope.chunk_id == detection.chunk_id else (
                f"the audio at that offset is chunk {envelope.chunk_id}")
        if envelope is None or problem:
            self.stats.mismatched += 1
            metrics.CLIPS.labels("mismatched").inc()
            log.warning("clip refused", chunk_id=str(detection.chunk_id), problem=problem[:200])
            return None
        relative = relative_path(detection.station_id, detection.chunk_start,
                                 detection.chunk_id, envelope.codec)
        size = write_clip(self.root, relative, msg.value() or b"")
        return KeptClip(detection.chunk_id,
                        datetime.fromtimestamp(detection.chunk_start / 1e9, UTC),
                        detection.station_id, relative, size, envelope.codec, item.reason,
                        detection.top.label, detection.top.probability)

    # ---- database -------------------------------------------------------------------------
    def _store(self, kept: list[KeptClip]) -> bool:
        delay = 0.25
        while not self._stop.is_set():
            try:
                conn = self._connection()
                with conn.transaction():
                    inserted = _insert(conn, kept)
                self._set_database(True)
                break
            except psycopg.OperationalError as exc:
                self._set_database(False)
                self._disconnect()
                self.stats.database_retries += 1
                log.warning("database unavailable; batch kept for retry",
                            error=str(exc).strip()[:200], retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        else:
            return False
        for clip in kept:
            if clip.chunk_id in inserted:
                setattr(self.stats, f"kept_{clip.reason}",
                        getattr(self.stats, f"kept_{clip.reason}") + 1)
                metrics.CLIPS.labels(clip.reason).inc()
                metrics.BYTES_WRITTEN.inc(clip.size)
            else:
                self.stats.already_kept += 1
        if self._live_bytes is not None:
            self._live_bytes += sum(c.size for c in kept if c.chunk_id in inserted)
        return True

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="soundscape-clips")
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _set_database(self, up: bool) -> None:
        self._database_up = up
        metrics.DATABASE_UP.set(1 if up else 0)

    def _evict_if_over(self) -> None:
        quota = self.settings.clips.max_bytes
        now = time.monotonic()
        try:
            conn = self._connection()
            if self._live_bytes is None or now - self._total_read_at > TOTAL_REFRESH_S \
                    or self._live_bytes > quota:
                self._live_bytes = live_bytes(conn)
                self._total_read_at = now
            if self._live_bytes <= quota:
                metrics.LIVE_BYTES.set(self._live_bytes)
                return
            evicted = evict(conn, self.root, self._live_bytes - quota)
        except psycopg.OperationalError as exc:
            self._set_database(False)
            self._disconnect()
            log.warning("eviction postponed: database unavailable", error=str(exc)[:200])
            return
        freed = sum(size for _, size in evicted)
        self.stats.evicted += len(evicted)
        self.stats.evicted_bytes += freed
        self._live_bytes -= freed
        metrics.EVICTED.inc(len(evicted))
        metrics.LIVE_BYTES.set(self._live_bytes)
        log.info("clips evicted", clips=len(evicted), bytes=freed, live_bytes=self._live_bytes,
                 quota_bytes=quota)


def _audio_position(item: Wanted) -> tuple[int, int]:
    source = item.detection.audio_source
    assert source is not None
    return source.partition, source.offset


def _fetch(fetcher: Consumer, topic: str, partition: int, offset: int) -> Message | None:
    """The message at (partition, offset) of the audio topic, or None when the topic no
    longer holds it (retention) or it is not there to be read."""
    fetcher.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            msg = fetcher.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
                    return None
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("audio fetch error", error=str(error))
                continue
            if msg.partition() == partition:
                # a later offset: the one asked for is gone (compacted, or a marker)
                return msg if msg.offset() == offset else None
        return None
    finally:
        fetcher.unassign()




def _insert(conn: psycopg.Connection[Any], kept: list[KeptClip]) -> set[uuid.UUID]:
    """Insert the rows not yet there; returns the chunk ids that were new."""
    inserted: set[uuid.UUID] = set()
    with conn.cursor() as cur:
        for c in kept:
            cur.execute(
                "INSERT INTO clips (chunk_id, chunk_start, station_id, path, bytes, codec, "
                "reason, top_label, top_probability) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (chunk_id) DO NOTHING RETURNING chunk_id",
                (c.chunk_id, c.chunk_start, c.station_id, c.path, c.size, c.codec, c.reason,
                 c.top_label, c.top_probability))
            if cur.fetchone() is not None:
                inserted.add(c.chunk_id)
    return inserted


def live_bytes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(sum(bytes), 0) FROM clips "
                       "WHERE evicted_at IS NULL").fetchone()
    return int(row[0]) if row else 0


def evict(conn: psycopg.Connection[Any], root: Path, excess: int) -> list[tuple[str, int]]:
    """Mark the oldest unreviewed clips evicted until `excess` bytes are freed, then
    delete their files; returns (path, bytes) of each. A clip reviewed in the meantime
    is left (the UPDATE checks again)."""
    with conn.transaction():
        rows = conn.execute(
            """
            WITH oldest AS (
                SELECT chunk_id, bytes,
                       sum(bytes) OVER (ORDER BY chunk_start, chunk_id) - bytes AS before
                FROM clips c
                WHERE evicted_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.chunk_id = c.chunk_id)
            )
            UPDATE clips c SET evicted_at = now()
            FROM oldest o
            WHERE c.chunk_id = o.chunk_id AND o.before < %s AND c.evicted_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.chunk_id = c.chunk_id)
            RETURNING c.path, c.bytes
            """, (excess,)).fetchall()
    for path, _ in rows:
        remove_clip(root, path)
    return [(str(path), int(size)) for path, size in rows]
