"""The station's disk spool: every chunk is on disk before it is sent, until Kafka acks it.

One file per chunk, `<seq>.chunk`: a magic line, the chunk's envelope headers as one JSON
line, then the payload. Files are written to a temporary name, fsynced and renamed, so a
power cut leaves either a whole chunk or a `.tmp` that is discarded at the next start.
Order is the station's seq, so a drain after an outage or a reboot sends in recording
order. The spool is bounded: beyond `max_bytes` the oldest chunks not in flight are
evicted, and every eviction is counted (heartbeat `evicted_chunks`, metrics, a warning).
"""

from __future__ import annotations

import errno
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from soundscape.envelope import ChunkEnvelope, EnvelopeError
from soundscape.logs import get_logger
from soundscape.producers import framed_files

log = get_logger(__name__)

MAGIC = b"SOUNDSCAPE-SPOOL 1\n"
SUFFIX = ".chunk"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    chunk_start: int
    size: int
    path: Path


class DiskSpool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.evicted = 0
        self.corrupt = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, SpoolEntry] = OrderedDict()
        self._bytes = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load()

    # ---- reading the state -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def oldest(self) -> SpoolEntry | None:
        with self._lock:
            return next(iter(self._entries.values()), None)

    def newest(self) -> SpoolEntry | None:
        with self._lock:
            return next(reversed(self._entries.values()), None)

    def entries(self, limit: int | None = None, skip: set[int] | None = None) -> list[SpoolEntry]:
        """Waiting chunks in seq order, leaving out `skip` (those already in flight)."""
        with self._lock:
            out = []
            for entry in self._entries.values():
                if skip and entry.seq in skip:
                    continue
                out.append(entry)
                if limit is not None and len(out) >= limit:
                    break
            return out

    def read(self, entry: SpoolEntry) -> tuple[ChunkEnvelope, bytes] | None:
        """The chunk as spooled; a damaged file is moved aside (counted) and None returned."""
        try:
            data = entry.path.read_bytes()
            envelope, payload = _parse(data)
        except (OSError, ValueError, EnvelopeError) as exc:
            self.quarantine(entry, str(exc))
            return None
        return envelope, payload

    # ---- changing it -------------------------------------------------------------------
    def put(
        self, envelope: ChunkEnvelope, payload: bytes, in_flight: set[int] | None = None
    ) -> int:
        """Store a chunk durably; returns how many old chunks were evicted to make room."""
        data = framed_files.encode(MAGIC, {k: v.decode() for k, v in envelope.to_headers()},
                                   payload)
        evicted = self._make_room(len(data), in_flight or set())
        path = self.directory / f"{envelope.seq:016d}{SUFFIX}"
        try:
            framed_files.write(path, data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # The disk is fuller than the bound allows for: make room by the data's size
            # again from what is spooled, then retry once.
            evicted += self._make_room(len(data), in_flight or set(), force=True)
            framed_files.write(path, data)
        with self._lock:
            self._entries[envelope.seq] = SpoolEntry(envelope.seq, envelope.chunk_start,
                                                     len(data), path)
            self._bytes += len(data)
        return evicted

    def remove(self, seq: int) -> bool:
        """Forget an acknowledged chunk; False if it was gone already (evicted meanwhile)."""
        with self._lock:
            entry = self._entries.pop(seq, None)
            if entry is None:
                return False
            self._bytes -= entry.size
        entry.path.unlink(missing_ok=True)
        return True

    # ---- internals ---------------------------------------------------------------------
    def _make_room(self, incoming: int, in_flight: set[int], force: bool = False) -> int:
        evicted = 0
        with self._lock:
            victims = []
            room = self._bytes + incoming - self.max_bytes
            if force:
                room = max(room, incoming)
            for entry in self._entries.values():
                if room <= 0:
                    break
                if entry.seq in in_flight:
                    continue
                victims.append(entry)
                room -= entry.size
            for entry in victims:
                del self._entries[entry.seq]
                self._bytes -= entry.size
        for entry in victims:
            entry.path.unlink(missing_ok=True)
            evicted += 1
            log.warning("spool full: evicted oldest chunk", seq=entry.seq,
                        chunk_start=entry.chunk_start, max_bytes=self.max_bytes)
        self.evicted += evicted
        return evicted

    def _load(self) -> None:
        framed_files.discard_temporaries(self.directory)
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                seq = int(path.stem)
                header = framed_files.read_header(MAGIC, path)
                found.append(SpoolEntry(seq, int(header["chunk_start"]), path.stat().st_size, path))
            except (OSError, ValueError, KeyError, TypeError) as exc:  # TypeError: int([1])
                self.quarantine(SpoolEntry(-1, 0, 0, path), str(exc))
        for entry in sorted(found, key=lambda e: e.seq):
            self._entries[entry.seq] = entry
            self._bytes += entry.size
        if found:
            log.info("spool holds chunks from before", chunks=len(found), bytes=self._bytes)

    def quarantine(self, entry: SpoolEntry, reason: str) -> None:
        """Move a chunk that can never be sent aside (kept for a person to look at)."""
        with self._lock:
            if self._entries.pop(entry.seq, None) is not None:
                self._bytes -= entry.size
        self.corrupt += 1
        framed_files.set_aside(entry.path)
        log.error("damaged spool file moved aside", path=str(entry.path), reason=reason)


def _parse(data: bytes) -> tuple[ChunkEnvelope, bytes]:
    header, payload = framed_files.decode(MAGIC, data)
    headers = [(str(k), str(v).encode()) for k, v in header.items()]
    return ChunkEnvelope.from_headers(headers, payload), payload
