"""Edge results on the station's disk until Kafka acknowledges them.

A station that scores its own chunks may send nothing else (`station.send_audio` false),
and a Pi restarts (a power cut, an update) more often than a long outage ends: results
waiting in the producer's memory would be lost then, although the audio behind them is
safe in the spool. So each result is written to a file of its own (`<chunk start>.result`:
a magic line, its key and headers as one JSON line, then its value), fsynced and renamed,
before it is produced, and removed when Kafka acknowledges it. A start sends what is
left, oldest first, before anything new.

A result whose acknowledgement a crash cut off is sent again; the edge sink stores a
chunk's result once (ON CONFLICT on chunk and bundle). The outbox is bounded by count
(`station.edge_outbox_max`): beyond it the oldest results are dropped, counted and
logged, as the audio spool evicts its oldest chunks.
"""

from __future__ import annotations

import base64
import heapq
import threading
from dataclasses import dataclass
from pathlib import Path

from soundscape.logs import get_logger
from soundscape.producers import framed_files

log = get_logger(__name__)

MAGIC = b"SOUNDSCAPE-EDGE-RESULT 1\n"
SUFFIX = ".result"


@dataclass(frozen=True, slots=True)
class PendingResult:
    chunk_start: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class EdgeOutbox:
    def __init__(self, directory: Path, max_results: int) -> None:
        if max_results < 1:
            raise ValueError("an edge outbox holds at least one result")
        self.directory = directory
        self.max_results = max_results
        self.dropped = 0
        self.corrupt = 0
        self._lock = threading.Lock()
        self._starts: set[int] = set()
        self.directory.mkdir(parents=True, exist_ok=True)
        framed_files.discard_temporaries(self.directory)
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                self._starts.add(int(path.stem))
            except ValueError:
                self._set_aside(path, "not an edge result file name")

    @property
    def depth(self) -> int:
        return len(self._starts)

    def pending(self) -> list[PendingResult]:
        """What a previous run left unacknowledged, oldest first (damaged files moved aside)."""
        found = []
        for start in sorted(self._starts):
            path = self._path(start)
            try:
                found.append(_parse(start, path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                with self._lock:
                    self._starts.discard(start)
                self._set_aside(path, str(exc))
        return found

    def put(self, result: PendingResult) -> None:
        """Keep `result` on disk (raises OSError when the disk refuses: the caller sends it
        from memory alone then)."""
        header = {"key": base64.b64encode(result.key).decode(),
                  "headers": [[name, base64.b64encode(value).decode()]
                              for name, value in result.headers]}
        framed_files.write(self._path(result.chunk_start),
                           framed_files.encode(MAGIC, header, result.value))
        with self._lock:
            self._starts.add(result.chunk_start)
            excess = len(self._starts) - self.max_results
            # nsmallest, not a sort of every start: a full outbox of 100,000 takes each put
            over = heapq.nsmallest(excess, self._starts) if excess > 0 else []
            for start in over:
                self._starts.discard(start)
        for start in over:
            self._path(start).unlink(missing_ok=True)
            self.dropped += 1
            log.warning("edge outbox full: oldest unsent result dropped", chunk_start=start,
                        max_results=self.max_results, dropped_total=self.dropped)

    def done(self, chunk_start: int) -> None:
        """Kafka has it: forget it."""
        with self._lock:
            self._starts.discard(chunk_start)
        self._path(chunk_start).unlink(missing_ok=True)

    def _path(self, chunk_start: int) -> Path:
        return self.directory / f"{chunk_start:020d}{SUFFIX}"

    def _set_aside(self, path: Path, reason: str) -> None:
        self.corrupt += 1
        framed_files.set_aside(path)
        log.error("damaged edge result file moved aside", path=str(path), reason=reason)


def _parse(chunk_start: int, data: bytes) -> PendingResult:
    header, value = framed_files.decode(MAGIC, data)
    headers = [(str(name), base64.b64decode(encoded)) for name, encoded in header["headers"]]
    return PendingResult(chunk_start, base64.b64decode(header["key"]), value, headers)
