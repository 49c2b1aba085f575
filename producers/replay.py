"""Archive replay: recordings -> 10 s chunks with their original times -> the audio topic.

Files are grouped per station into continuous runs (archive.plan_runs), decoded,
downmixed and resampled to 32 kHz, and cut by the same chunker as a live station, so a
replay gives the same chunk ids every time it is run: downstream writes are idempotent
on them and a replay of what was already ingested adds no duplicate results.

Remainder rule: what is left at the end of a run (a file shorter than 10 s, or the tail
of the last file) is padded with silence to 10 s and flagged with the `padded_samples`
header when it is at least `replay.min_remainder_s` long and the padding does not
overlap the station's next run; otherwise it is dropped and counted in the summary.

Delivery never gives up: with the broker unreachable the replay waits (and says so), and
acknowledged progress is checkpointed, so a stopped replay continues where it stopped.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message

from soundscape.audio_codec import encode
from soundscape.chunk_signing import ARCHIVE_PREFIX, ChunkSigner
from soundscape.counters import Counters
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope
from soundscape.logs import get_logger
from soundscape.producers.archive import (
    ArchiveFile,
    ArchiveReadError,
    Naming,
    Skipped,
    discover,
    model_rate_blocks,
    plan_runs,
    probe_all,
)
from soundscape.producers.chunker import CHUNK_NS, CHUNK_SAMPLES, MODEL_RATE, Chunker, RawChunk
from soundscape.producers.delivery import BrokerWatch, patient_overrides
from soundscape.producers.pacing import Pacer
from soundscape.producers.replay_checkpoint import ReplayCheckpoint, checkpoint_path
from soundscape.settings import Settings

log = get_logger(__name__)

MAX_IN_FLIGHT = 64
WAITING_NOTICE_S = 10.0


@dataclass
class ReplaySummary(Counters):
    files_found: int = 0
    files_replayed: int = 0
    files_already_done: int = 0
    chunks: int = 0
    chunks_already_acked: int = 0
    bytes: int = 0
    padded_chunks: int = 0
    dropped_remainders: int = 0
    dropped_remainder_s: float = 0.0
    gaps: int = 0
    failed_deliveries: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    checkpoint: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    partial: list[Skipped] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["megabytes"] = round(self.bytes / 1e6, 2)
        data["chunks_per_s"] = round(self.chunks_per_s, 2)
        data["seconds"] = round(self.seconds, 2)
        data["skipped"] = [{"path": str(s.path), "reason": s.reason} for s in self.skipped]
        data["partial"] = [{"path": str(s.path), "reason": s.reason} for s in self.partial]
        return data


class Replay:
    def __init__(
        self,
        settings: Settings,
        inputs: list[str],
        naming: Naming,
        *,
        speed: float | None = None,
        checkpoint: Path | None = None,
        restart: bool = False,
        limit: int | None = None,
        progress: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.naming = naming
        self.speed = settings.replay.speed if speed is None else speed
        self.limit = limit
        self.progress = progress
        self.stop = stop or threading.Event()
        self.summary = ReplaySummary()
        paths, self.summary.skipped = discover(inputs)
        self.paths = paths
        folder = settings.replay.checkpoint_dir or settings.state_dir / "replay"
        self.checkpoint = ReplayCheckpoint(
            checkpoint or checkpoint_path(folder, paths, naming.station)
        )
        if restart:
            self.checkpoint.delete()
            self.checkpoint = ReplayCheckpoint(self.checkpoint.path)
        self.summary.checkpoint = str(self.checkpoint.path)
        self.watch = BrokerWatch("replay")
        #: set by a second Ctrl-C: stop waiting for acknowledgements (the checkpoint keeps
        #: only what was acked, so nothing is lost, only re-sent next time)
        self.abort = threading.Event()
        self._sent = 0
        self._bar: Any = None
        self._awaiting: list[tuple[str, int, list[str]]] = []
        key = settings.replay.signing_key
        self._signer = None if key is None else _archive_signer(
            key.get_secret_value(), f"{ARCHIVE_PREFIX}{settings.replay.archive_name}")

    # ---- the service (soundscape.service_runner) ----------------------------------------
    name = "replay"

    def request_stop(self) -> None:
        self.stop.set()

    def stop_now(self) -> None:
        self.stop.set()
        self.abort.set()

    def health(self) -> dict[str, Any]:
        return {"healthy": not self.stop.is_set(), "chunks": self.summary.chunks,
                "files_replayed": self.summary.files_replayed}

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> ReplaySummary:
        started = time.monotonic()
        files, bad = probe_all(self.paths, self.naming)
        tolerance = int(self.settings.replay.join_tolerance_s * 1e9)
        runs, overlapping = plan_runs(files, tolerance)
        self.summary.files_found = len(self.paths) + len(self.summary.skipped)
        self.summary.skipped += bad + overlapping
        todo = [run for run in runs if not all(f.key in self.checkpoint.done_files for f in run)]
        self.summary.files_already_done = sum(len(r) for r in runs) - sum(len(r) for r in todo)
        if self.checkpoint.resuming:
            log.info("resuming replay", checkpoint=str(self.checkpoint.path),
                     runs_done=len(runs) - len(todo), runs_left=len(todo))

        from tqdm import tqdm

        self._bar = tqdm(total=self._estimate(todo), unit="chunk", desc="replay",
                         disable=not self.progress, dynamic_ncols=True)
        publisher = ChunkPublisher(
            self.settings,
            on_delivered=self._delivered,
            on_failed=self._failed,
            **patient_overrides(self.settings.station.retry_backoff_max_s, self.watch),
        )
        pacer = Pacer(self.speed, self.stop)
        first_start = {run[0].station_id: run[0].start_ns for run in reversed(runs)}
        chunkers: dict[str, Chunker] = {}
        try:
            for index, run in enumerate(todo):
                if self._should_stop():
                    break
                station = run[0].station_id
                chunker = chunkers.get(station) or self._chunker(station)
                chunkers[station] = chunker
                following = todo[index + 1] if index + 1 < len(todo) else None
                next_start = (following[0].start_ns if following
                              and following[0].station_id == station else None)
                last_start, complete = self._replay_run(run, chunker, next_start, publisher,
                                                        pacer, first_start[station])
                if complete:
                    self._awaiting.append((station, last_start, [f.key for f in run]))
                self._mark_done_runs()
            self._wait_for_acks(publisher)
        finally:
            self._mark_done_runs()
            self.checkpoint.save(force=True)
            self._bar.close()
            self.summary.seconds = time.monotonic() - started
            self.summary.stopped_early = self._should_stop()
        return self.summary

    def _chunker(self, station: str) -> Chunker:
        acked = self.checkpoint.acked_through.get(station)
        return Chunker(
            pad_min_samples=max(1, round(self.settings.replay.min_remainder_s * MODEL_RATE)),
            last_end_ns=acked + CHUNK_NS if acked is not None else None,
        )

    def _replay_run(self, run: list[ArchiveFile], chunker: Chunker, next_start: int | None,
                    publisher: ChunkPublisher, pacer: Pacer, origin: int) -> tuple[int, bool]:
        """Publish one continuous run: the start of its last chunk (-1: none), and whether
        it was replayed to its end (not stopped part-way)."""
        last_start = -1
        broken = True  # the run's first file starts the chunk grid
        for archive in run:
            if self._should_stop():
                return last_start, False
            self.summary.files_replayed += 1
            first = True
            try:
                for block in model_rate_blocks(archive):
                    emitted: list[RawChunk] = []
                    if first and broken:
                        emitted += chunker.end_run(next_start_ns=archive.start_ns)
                        emitted += chunker.feed(block.samples, archive.start_ns)
                    else:
                        emitted += chunker.feed(block.samples)
                    first = broken = False
                    for raw in emitted:
                        last_start = self._publish(raw, archive, publisher, pacer, origin)
                    if self._should_stop():
                        return last_start, False
            except ArchiveReadError as exc:
                self.summary.partial.append(Skipped(archive.path, exc.reason))
                log.warning("file ended early; what was read is kept", path=str(archive.path),
                            reason=exc.reason)
                broken = True
        dropped_before = chunker.stats.dropped_samples
        for raw in chunker.end_run(next_start_ns=next_start):
            last_start = self._publish(raw, run[-1], publisher, pacer, origin)
        dropped = chunker.stats.dropped_samples - dropped_before
        if dropped:
            self.summary.dropped_remainders += 1
            self.summary.dropped_remainder_s += dropped / MODEL_RATE
        return last_start, not self._should_stop()

    def _publish(self, raw: RawChunk, archive: ArchiveFile, publisher: ChunkPublisher,
                 pacer: Pacer, station_origin: int) -> int:
        station = archive.station_id
        if self.checkpoint.already_acked(station, raw.start_ns):
            self.summary.chunks_already_acked += 1
            return raw.start_ns
        if self._should_stop():
            return raw.start_ns
        payload = encode(raw.samples, MODEL_RATE, "flac")
        envelope = ChunkEnvelope.for_payload(
            payload,
            station_id=station,
            chunk_start=raw.start_ns,
            sample_rate=MODEL_RATE,
            codec="flac",
            seq=max(0, (raw.start_ns - station_origin) // CHUNK_NS),
            captured_at=raw.end_ns,  # when the recorder finished this audio
            source="replay",
            gap_ns=raw.gap_ns,
        )
        if raw.padded_samples:
            padded = str(raw.padded_samples).encode()
            envelope = replace(envelope, extra=(("padded_samples", padded),))
            self.summary.padded_chunks += 1
        if self._signer is not None:
            envelope = self._signer.sign(envelope)
        if raw.gap_ns:
            self.summary.gaps += 1
        pacer.wait(self._sent_seconds())
        self._wait_for_room(publisher)
        if self.stop.is_set():
            return raw.start_ns  # not sent: the checkpoint does not pass it
        self.checkpoint.sent(station, raw.start_ns)
        publisher.publish(envelope, payload)
        self._sent += 1
        self.summary.bytes += len(payload)
        return raw.start_ns

    def _sent_seconds(self) -> float:
        return self._sent * CHUNK_SAMPLES / MODEL_RATE

    def _should_stop(self) -> bool:
        return self.stop.is_set() or (self.limit is not None and self._sent >= self.limit)

    # ---- delivery ----------------------------------------------------------------------
    def _delivered(self, envelope: ChunkEnvelope, _msg: Message) -> None:
        self.checkpoint.acked(envelope.station_id, envelope.chunk_start)
        self.summary.chunks += 1
        self.watch.acked()
        self._bar.update(1)

    def _failed(self, envelope: ChunkEnvelope, err: KafkaError) -> None:
        # The checkpoint stops advancing at this chunk, so a re-run sends it again.
        self.summary.failed_deliveries += 1
        log.error("chunk not delivered", chunk_id=str(envelope.chunk_id), error=err.str())

    def _wait_for_room(self, publisher: ChunkPublisher) -> None:
        while publisher.in_queue() >= MAX_IN_FLIGHT and not self.stop.is_set():
            self._poll(publisher)

    def _wait_for_acks(self, publisher: ChunkPublisher) -> None:
        while publisher.in_queue() > 0:
            self._poll(publisher)
            if self.abort.is_set():
                break

    def _poll(self, publisher: ChunkPublisher) -> None:
        publisher.poll(0.2)
        waiting = time.monotonic() - self.watch.last_ack
        self._bar.set_postfix_str("waiting for Kafka" if waiting > WAITING_NOTICE_S else "",
                                  refresh=False)
        self._mark_done_runs()
        self.checkpoint.save()

    def _mark_done_runs(self) -> None:
        still = []
        for station, last_start, keys in self._awaiting:
            if last_start < 0 or self.checkpoint.acked_through.get(station, -1) >= last_start:
                self.checkpoint.files_done(keys)
            else:
                still.append((station, last_start, keys))
        self._awaiting = still

    def _estimate(self, runs: list[list[ArchiveFile]]) -> int:
        total = 0
        for run in runs:
            begin = run[0].start_ns
            acked = self.checkpoint.acked_through.get(run[0].station_id)
            if acked is not None:
                begin = max(begin, acked + CHUNK_NS)
            total += max(0, math.ceil((run[-1].end_ns - begin) / CHUNK_NS))
        return total if self.limit is None else min(total, self.limit)


def _archive_signer(key: str, signer: str) -> ChunkSigner:
    from soundscape.errors import UserError

    try:
        return ChunkSigner.from_text(key, signer)
    except ValueError as exc:
        raise UserError(f"the replay's signing key is unusable: {exc}",
                        hint="SOUNDSCAPE_REPLAY__SIGNING_KEY from `soundscape keys archive`") \
            from None
