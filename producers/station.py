"""The field station: capture -> gapless 10 s chunks -> FLAC -> disk spool -> Kafka.

One thread captures, chunks, encodes and spools (the source's own callback thread
feeds it); the forwarder thread sends the spool in order; a third sends heartbeats.
Nothing is deleted before Kafka acked it, so a broker outage, a network cut or a reboot
only delays chunks. A station with `edge_bundle` also scores each chunk on a fourth
thread (producers/edge_scoring.py) that capture never waits for; with `send_audio`
false its audio stays in the spool and only results and heartbeats are sent. On SIGTERM the chunk being recorded is completed (at most 10 s more
audio, `stop_grace_s`), then the spool gets `drain_timeout_s` to empty; what is left is
sent by the next start. A second signal stops at once; the partial chunk is then
dropped, counted, and its time shows as the next chunk's `gap_ns`.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soundscape import __version__
from soundscape.audio_codec import encode
from soundscape.chunk_signing import ChunkSigner
from soundscape.envelope import ChunkEnvelope
from soundscape.errors import UserError
from soundscape.logs import get_logger
from soundscape.messages import Heartbeat
from soundscape.producers import system_health
from soundscape.producers.chunker import CHUNK_NS, MODEL_RATE, Chunker, RawChunk
from soundscape.producers.forwarder import SpoolForwarder
from soundscape.producers.heartbeats import HeartbeatSender
from soundscape.producers.resample import StreamResampler
from soundscape.producers.sources import AudioSource
from soundscape.producers.spool import DiskSpool
from soundscape.producers.station_state import StationState
from soundscape.settings import Settings

if TYPE_CHECKING:
    from soundscape.producers.edge_scoring import EdgeScorer

log = get_logger(__name__)


def station_dir(settings: Settings, station_id: str) -> Path:
    return settings.station.data_dir or settings.state_dir / "station" / station_id


class Station:
    def __init__(
        self,
        settings: Settings,
        station_id: str,
        source: AudioSource,
        *,
        max_chunks: int | None = None,
        drain_timeout_s: float | None = 20.0,
        stop_grace_s: float = 12.0,
    ) -> None:
        self.settings = settings
        self.station_id = station_id
        self.source = source
        self.signer = _signer(settings.station.signing_key, station_id)
        self.codec = settings.station.codec
        self.max_chunks = max_chunks
        self.drain_timeout_s = drain_timeout_s
        self.stop_grace_s = stop_grace_s
        self.home = station_dir(settings, station_id)
        self.spool = DiskSpool(self.home / "spool", settings.station.spool_max_mb * 1024 * 1024)
        self.state_path = self.home / "state.json"
        self.state = StationState.load(self.state_path, station_id)
        newest = self.spool.newest()
        if newest is not None:  # spooled just before a crash, before the state was saved
            self.state.next_seq = max(self.state.next_seq, newest.seq + 1)
            self.state.last_chunk_end_ns = max(self.state.last_chunk_end_ns or 0,
                                               newest.chunk_start + CHUNK_NS)
        self.chunker = Chunker(
            step_tolerance_ns=settings.station.clock_step_ms * 1_000_000,
            last_end_ns=self.state.last_chunk_end_ns,
        )
        self.resampler = StreamResampler(source.sample_rate, MODEL_RATE)
        # every key exists up front: the forwarder thread adds to "publish" while
        # snapshots copy the dict
        self.cpu_s = dict.fromkeys(("capture", "resample", "encode", "spool", "publish"), 0.0)
        self.forwarder = SpoolForwarder(settings, self.spool, self.cpu_s)
        self.send_audio = settings.station.send_audio
        self.edge = _edge_scorer(settings, station_id, self.signer, self.cpu_s,
                                 self.home / "edge-outbox")
        if not self.send_audio and self.edge is None:
            raise UserError("station.send_audio is false but no station.edge_bundle is set: "
                            "the station would send nothing but heartbeats",
                            hint="set SOUNDSCAPE_STATION__EDGE_BUNDLE to an (int8) bundle, or "
                                 "send the audio")
        self.heartbeats = HeartbeatSender(settings, self.heartbeat)
        self.captured = 0
        self.captured_bytes = 0
        #: Chunks the disk had no room for even after evicting the spool: each a gap, its
        #: length carried into the next stored chunk's `gap_ns`.
        self.disk_full_chunks = 0
        self.disk_full_gap_ns = 0
        self._carried_gap_ns = 0
        self.started_ns = time.time_ns()
        self.last_block_at = time.monotonic()
        self.stop_requested = threading.Event()
        self.abort = threading.Event()
        #: called after each chunk is spooled, with the count so far (benchmarks time it)
        self.on_stored: Callable[[int], None] | None = None

    # ---- the service (soundscape.service_runner) ----------------------------------------
    name = "station"

    def request_stop(self) -> None:
        """First signal: complete the current chunk, send what is spooled, stop."""
        self.stop_requested.set()

    def stop_now(self) -> None:
        """Second signal: stop at once; the partial chunk is dropped, the spool kept."""
        self.stop_requested.set()
        self.abort.set()

    # ---- the capture loop --------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        log.info("station starting", station=self.station_id, source=self.source.description,
                 spool=str(self.spool.directory), spooled=self.spool.depth,
                 next_seq=self.state.next_seq)
        if self.send_audio:
            self.forwarder.start()
        else:
            log.info("audio is not sent (station.send_audio false): it stays in the spool, "
                     "the newest first kept", spool_max_mb=self.settings.station.spool_max_mb)
        if self.edge is not None:
            log.info("scoring chunks on the station", bundle=self.edge.model.version,
                     threads=self.edge.model.threads, topic=self.edge.topic)
            self.edge.start()
        self.heartbeats.start()
        source_stop = threading.Event()
        grace_until: float | None = None
        blocks = iter(self.source.blocks(source_stop))
        try:
            while not self.abort.is_set():
                started = time.thread_time()
                block = next(blocks, None)
                self._account("capture", started)
                if block is None:
                    break
                self.last_block_at = time.monotonic()
                started = time.thread_time()
                out = self.resampler.process(block)
                self._account("resample", started)
                chunks = self.chunker.feed(out.samples, out.start_ns, out.lost_before)
                for raw in chunks:
                    self._store(raw)
                if self.max_chunks is not None and self.captured >= self.max_chunks:
                    break
                if self.stop_requested.is_set():
                    grace_until = grace_until or time.monotonic() + self.stop_grace_s
                    on_boundary = bool(chunks) or self.chunker.pending_samples == 0
                    if on_boundary or time.monotonic() > grace_until:
                        break
        finally:
            source_stop.set()
            close = getattr(blocks, "close", None)
            if close is not None:
                close()  # a microphone's stream is closed here, not by the garbage collector
            self._finish()
        return self.snapshot()

    def _store(self, raw: RawChunk) -> None:
        started = time.thread_time()
        payload = encode(raw.samples, MODEL_RATE, self.codec)
        self._account("encode", started)
        started = time.thread_time()
        envelope = ChunkEnvelope.for_payload(
            payload,
            station_id=self.station_id,
            chunk_start=raw.start_ns,
            sample_rate=MODEL_RATE,
            codec=self.codec,
            seq=self.state.next_seq,
            captured_at=time.time_ns(),
            source="live",
            gap_ns=raw.gap_ns + self._carried_gap_ns,
        )
        if self.signer is not None:  # signed before it is spooled: the spool keeps it
            envelope = self.signer.sign(envelope)
        if self.edge is not None:  # never waits: a chunk it has no room for is counted
            self.edge.offer(envelope, raw.samples)
        try:
            evicted = self.spool.put(envelope, payload, self.forwarder.in_flight())
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self._lost_to_full_disk(raw)
            return
        self._carried_gap_ns = 0
        self.state.next_seq += 1
        self.state.last_chunk_end_ns = raw.end_ns
        try:
            self.state.save(self.state_path)
        except OSError as exc:  # the spool repairs next_seq at start (its newest seq + 1)
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("disk full: station state not saved; the spool keeps the order",
                        seq=envelope.seq)
        self._account("spool", started)
        self.forwarder.notify()
        self.captured += 1
        self.captured_bytes += len(payload)
        if self.on_stored is not None:
            self.on_stored(self.captured)
        if raw.gap_ns:
            log.warning("gap before chunk", seq=envelope.seq, gap_s=round(raw.gap_ns / 1e9, 3))
        if evicted and self.send_audio:  # a station that keeps audio only evicts all along
            log.warning("spool full", evicted=evicted, evicted_total=self.spool.evicted)

    def _lost_to_full_disk(self, raw: RawChunk) -> None:
        """Not even an empty spool makes room (another program filled the disk): the chunk
        is lost, and recorded as a gap, never stored half-written; capture goes on."""
        lost = raw.end_ns - raw.start_ns
        self.disk_full_chunks += 1
        self.disk_full_gap_ns += lost
        self._carried_gap_ns += raw.gap_ns + lost
        log.error("disk full: chunk not spooled, recorded as a gap", chunk_start=raw.start_ns,
                  lost_s=round(lost / 1e9, 3), lost_chunks=self.disk_full_chunks,
                  spool=str(self.spool.directory))

    def _finish(self) -> None:
        partial = self.chunker.pending_samples
        self.chunker.end_run()  # live stations never pad: a partial chunk becomes a gap
        if partial:
            log.info("partial chunk not kept; the next start records it as a gap",
                     seconds=round(partial / MODEL_RATE, 2))
        if self.edge is not None:
            self.edge.stop()
        drained = (not self.send_audio
                   or self.forwarder.drain(0 if self.abort.is_set() else self.drain_timeout_s))
        self.forwarder.stop()
        self.heartbeats.stop()
        if not drained:
            log.warning("stopping with chunks still spooled; the next start sends them",
                        spooled=self.spool.depth)
        log.info("station stopped", **{k: v for k, v in self.snapshot().items() if k != "cpu_s"})

    def _account(self, stage: str, started: float) -> None:
        self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + time.thread_time() - started

    # ---- reporting ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        oldest = self.spool.oldest()
        now = time.time_ns()
        stats = self.chunker.stats
        dropped_capture = self.source.dropped_frames * MODEL_RATE // self.source.sample_rate
        return {
            "station_id": self.station_id,
            "chunks_captured": self.captured,
            "bytes_captured": self.captured_bytes,
            "chunks_acked": self.forwarder.acked,
            "spool_depth": self.spool.depth,
            "spool_bytes": self.spool.bytes,
            "oldest_spooled_chunk_start": oldest.chunk_start if oldest else None,
            "spool_oldest_age_s": (now - oldest.chunk_start) / 1e9 if oldest else 0.0,
            "in_flight": len(self.forwarder.in_flight()),
            "evicted_chunks": self.spool.evicted,
            "corrupt_spool_files": self.spool.corrupt,
            "overruns": self.source.overruns,
            "dropped_samples": stats.dropped_samples + dropped_capture,
            "gaps": stats.gaps + self.disk_full_chunks,
            "gap_s_total": (stats.gap_ns_total + self.disk_full_gap_ns) / 1e9,
            "disk_full_chunks": self.disk_full_chunks,
            "clock_drift_s": stats.clock_drift_ns / 1e9,
            "clock_steps_back": stats.clock_steps_back,
            "delivery_failures": self.forwarder.failures,
            "heartbeats_sent": self.heartbeats.sent,
            "next_seq": self.state.next_seq,
            "send_audio": self.send_audio,
            **(self.edge.snapshot() if self.edge is not None else {}),
            "cpu_s": dict(self.cpu_s),
        }

    def heartbeat(self) -> Heartbeat:
        data = self.snapshot()
        return Heartbeat(
            station_id=self.station_id,
            sent_at=time.time_ns(),
            software_version=__version__,
            # a station scoring its own chunks names its bundle; workers record theirs
            bundle_version=self.edge.model.version if self.edge is not None else None,
            disk_free_bytes=system_health.disk_free_bytes(self.spool.directory),
            spool_depth=data["spool_depth"],
            spool_bytes=data["spool_bytes"],
            oldest_spooled_chunk_start=data["oldest_spooled_chunk_start"],
            evicted_chunks=data["evicted_chunks"],
            cpu_temperature_c=system_health.cpu_temperature_c(),
            dropped_samples=data["dropped_samples"],
            overruns=data["overruns"],
            gaps=data["gaps"],
            gap_ns_total=self.chunker.stats.gap_ns_total + self.disk_full_gap_ns,
            clock_offset_ms=system_health.clock_offset_ms(),
            edge_scored=data.get("edge_scored"),
            edge_skipped=data.get("edge_skipped"),
        )

    def health(self) -> dict[str, Any]:
        """/healthz: capture delivers blocks and the forwarder runs."""
        silent_s = time.monotonic() - self.last_block_at
        report = {k: v for k, v in self.snapshot().items() if k != "cpu_s"}
        report["seconds_since_audio"] = round(silent_s, 1)
        report["kafka_error"] = self.forwarder.watch.last_error
        sending = self.forwarder.alive or not self.send_audio
        scoring = self.edge is None or self.edge.alive
        report["healthy"] = sending and scoring and silent_s < 30
        return report


def _edge_scorer(settings: Settings, station_id: str, signer: ChunkSigner | None,
                 cpu_s: dict[str, float], outbox_dir: Path) -> EdgeScorer | None:
    """The scorer of `station.edge_bundle`, its bundle loaded and checked now (a bad one
    stops the station here); None when the station scores nothing."""
    if settings.station.edge_bundle is None:
        return None
    from soundscape.producers.edge_outbox import EdgeOutbox
    from soundscape.producers.edge_scoring import EdgeModel, EdgeScorer

    model = EdgeModel(settings.station.edge_bundle, station_id, settings,
                      threads=settings.station.edge_threads, signer=signer)
    return EdgeScorer(settings, model, cpu_s,
                      EdgeOutbox(outbox_dir, settings.station.edge_outbox_max))


def _signer(key: Any, signer: str) -> ChunkSigner | None:
    if key is None:
        return None
    try:
        return ChunkSigner.from_text(key.get_secret_value(), signer)
    except ValueError as exc:
        raise UserError(f"the station's signing key is unusable: {exc}",
                        hint="use the bundle `soundscape stations add` wrote") from None
