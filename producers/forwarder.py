"""Send the spool to Kafka in order and delete each chunk only once the broker acked it.

A thread of its own, so capture never waits for the network. At most `max_in_flight`
chunks are handed to the producer at a time; the rest wait on disk. A chunk whose
delivery fails is sent again after a backoff (a fatal producer error also gets a fresh
producer); a chunk the broker can never take (over the size limit) is moved aside.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, Message

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope
from soundscape.logs import get_logger
from soundscape.producers.delivery import BrokerWatch, patient_overrides
from soundscape.producers.spool import DiskSpool
from soundscape.settings import Settings

log = get_logger(__name__)

#: errors the broker will give again however often the chunk is sent
PERMANENT_ERRORS = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD)


class SpoolForwarder:
    def __init__(self, settings: Settings, spool: DiskSpool, cpu_seconds: dict[str, float]) -> None:
        self.settings = settings
        self.spool = spool
        self.max_in_flight = settings.station.max_in_flight
        self.backoff_max_s = settings.station.retry_backoff_max_s
        self.watch = BrokerWatch("station")
        self.acked = 0
        self.acked_bytes = 0
        self.failures = 0
        self.rejected = 0
        self._cpu = cpu_seconds
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._backoff_until = 0.0
        self._backoff_s = 0.5
        self._thread = threading.Thread(target=self._run, name="spool-forwarder", daemon=True)
        self._publisher = self._new_publisher()
        self._error: BaseException | None = None

    # ---- control -----------------------------------------------------------------------
    def start(self) -> SpoolForwarder:
        self._thread.start()
        return self

    def notify(self) -> None:
        """A new chunk is in the spool."""
        self._wake.set()

    def in_flight(self) -> set[int]:
        with self._lock:
            return set(self._in_flight)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def drain(self, timeout_s: float | None) -> bool:
        """Wait until the spool is empty (True) or the timeout passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.spool.depth and self.alive:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.1)
        return self.spool.depth == 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():  # a station that failed while starting never started it
            self._thread.join(timeout=30)
        # Unacked chunks stay in the spool; the next start sends them.
        self._publisher.poll(0)

    # ---- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.thread_time()
                self._send_some()
                self._publisher.poll(0.05)
                self._cpu["publish"] = self._cpu.get("publish", 0.0) + time.thread_time() - started
                if not self._in_flight and (self.spool.depth == 0 or self._backing_off()):
                    self._wake.wait(0.2)
                    self._wake.clear()
        except BaseException as exc:  # noqa: BLE001 - reported by the station's health check
            self._error = exc
            log.exception("spool forwarder stopped")
            raise

    def _backing_off(self) -> bool:
        return time.monotonic() < self._backoff_until

    def _send_some(self) -> None:
        if self._backing_off():
            return
        room = self.max_in_flight - len(self._in_flight)
        if room <= 0:
            return
        for entry in self.spool.entries(limit=room, skip=self.in_flight()):
            loaded = self.spool.read(entry)
            if loaded is None:
                continue  # damaged on disk: moved aside and counted by the spool
            envelope, payload = loaded
            with self._lock:
                self._in_flight.add(envelope.seq)
            self._publisher.publish(envelope, payload)

    def _delivered(self, envelope: ChunkEnvelope, _msg: Message) -> None:
        with self._lock:
            self._in_flight.discard(envelope.seq)
        self.spool.remove(envelope.seq)
        self.acked += 1
        self._backoff_s = 0.5
        self.watch.acked()

    def _failed(self, envelope: ChunkEnvelope, err: KafkaError) -> None:
        self.failures += 1
        with self._lock:
            self._in_flight.discard(envelope.seq)
        if err.code() in PERMANENT_ERRORS:
            self.rejected += 1
            entry = next((e for e in self.spool.entries() if e.seq == envelope.seq), None)
            if entry is not None:
                self.spool.quarantine(entry, f"broker refused it: {err.str()}")
            return
        log.warning("chunk delivery failed; it stays spooled and is sent again",
                    seq=envelope.seq, error=err.str(), retry_in_s=self._backoff_s)
        self._backoff_until = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.backoff_max_s)
        if err.fatal():
            # An idempotent producer that hit a fatal error must be replaced; what it held
            # is still in the spool.
            self._publisher = self._new_publisher()
            with self._lock:
                self._in_flight.clear()

    def _new_publisher(self) -> ChunkPublisher:
        return ChunkPublisher(
            self.settings,
            on_delivered=self._delivered,
            on_failed=self._failed,
            **patient_overrides(self.backoff_max_s, self.watch),
        )
