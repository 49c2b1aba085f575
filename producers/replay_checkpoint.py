"""What a replay has had acknowledged, so a stopped replay continues where it stopped.

Per station, `acked_through_ns`: the start of the last chunk such that it and every
chunk before it (in this replay) were acknowledged; per file, `done` once its whole run
of files was sent and acked. A resumed replay skips runs whose files are all done and
re-reads (without publishing) the acknowledged part of the run it stopped in, so the
chunks it sends are cut exactly as the first attempt would have cut them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from soundscape.errors import UserError

VERSION = 1


def checkpoint_path(folder: Path, inputs: list[Path], station: str | None) -> Path:
    """One checkpoint per set of inputs, so re-running the same command resumes it."""
    key = "\n".join(str(p) for p in sorted(inputs)) + f"\n{station or ''}"
    return folder / f"replay-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


class ReplayCheckpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.acked_through: dict[str, int] = {}
        self.done_files: set[str] = set()
        self._sent: dict[str, deque[int]] = {}
        self._acked: dict[str, set[int]] = {}
        self._dirty = False
        self._saved_at = 0.0
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')} (this replay writes {VERSION})")
            acked = data["acked_through_ns"]
            if not isinstance(acked, dict):
                raise ValueError("acked_through_ns is not a JSON object")
            self.acked_through = {str(k): int(v) for k, v in acked.items()}
            self.done_files = set(data["done_files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"replay checkpoint {self.path} is unreadable: {exc}",
                hint="delete it (or pass --restart) to replay from the beginning",
            ) from None

    @property
    def resuming(self) -> bool:
        return bool(self.acked_through or self.done_files)

    def already_acked(self, station: str, chunk_start: int) -> bool:
        return chunk_start <= self.acked_through.get(station, -1)

    # ---- bookkeeping, called as chunks are sent and acknowledged --------------------------
    def sent(self, station: str, chunk_start: int) -> None:
        with self._lock:
            self._sent.setdefault(station, deque()).append(chunk_start)

    def acked(self, station: str, chunk_start: int) -> None:
        with self._lock:
            acked = self._acked.setdefault(station, set())
            acked.add(chunk_start)
            queue = self._sent.get(station, deque())
            while queue and queue[0] in acked:
                done = queue.popleft()
                acked.discard(done)
                self.acked_through[station] = max(self.acked_through.get(station, -1), done)
                self._dirty = True

    def all_acked(self, station: str) -> bool:
        with self._lock:
            return not self._sent.get(station)

    def files_done(self, keys: list[str]) -> None:
        with self._lock:
            self.done_files.update(keys)
            self._dirty = True

    # ---- persistence -------------------------------------------------------------------
    def save(self, force: bool = False, every_s: float = 2.0) -> None:
        now = time.monotonic()
        if not (self._dirty and (force or now - self._saved_at >= every_s)):
            return
        with self._lock:
            data: dict[str, Any] = {
                "version": VERSION,
                "acked_through_ns": dict(self.acked_through),
                "done_files": sorted(self.done_files),
            }
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)
        self._saved_at = now

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
