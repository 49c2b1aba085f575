"""Writing a file so that a crash or power cut leaves the whole new file or the old one:
a temporary file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, data: bytes, temporary: Path | None = None) -> None:
    """`temporary` (default `path` + `.tmp`) must be in the same folder; a crash can leave
    it behind, for the caller's start-up to discard."""
    tmp = temporary or path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: give back what the partial copy took
        raise
    folder = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
