"""One record per file, for the station's folders that must survive a power cut.

The audio spool and the edge-result outbox keep each record in a file of its own: a magic
line naming the format, a JSON header line, then the payload, written to a temporary name,
fsynced and renamed (`soundscape.durable_write`). A power cut leaves either a whole file or
a `.tmp` that the next start discards; a file that cannot be read is moved aside for a
person to look at, never deleted unseen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soundscape.durable_write import write_durably

TEMPORARY = ".tmp"
ASIDE = "corrupt"


def encode(magic: bytes, header: Mapping[str, Any], payload: bytes) -> bytes:
    return magic + json.dumps(header).encode() + b"\n" + payload


def decode(magic: bytes, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and payload of a whole file; ValueError names what is wrong."""
    if not data.startswith(magic):
        raise ValueError("not a file of this format (magic line differs)")
    end = data.find(b"\n", len(magic))
    if end < 0:
        raise ValueError("the header line is cut short")
    return _header(data[len(magic):end]), data[end + 1:]


def read_header(magic: bytes, path: Path) -> dict[str, Any]:
    """The header alone, reading no further than its line (a start lists every file)."""
    with open(path, "rb") as handle:
        if handle.readline() != magic:
            raise ValueError("not a file of this format (magic line differs)")
        line = handle.readline()
    if not line.endswith(b"\n"):
        raise ValueError("the header line is cut short")
    return _header(line)


def write(path: Path, data: bytes) -> None:
    """Durably, through `<path stem>.tmp` in the same folder (what `discard_temporaries`
    removes after a crash)."""
    write_durably(path, data, path.with_suffix(TEMPORARY))


def discard_temporaries(directory: Path) -> int:
    """Remove the writes a crash or power cut left unfinished; returns how many."""
    removed = 0
    for stale in directory.glob(f"*{TEMPORARY}"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def set_aside(path: Path) -> Path | None:
    """Move `path` into its folder's `corrupt/` (created on demand); where that fails too
    (a full or read-only disk), remove it so it cannot block the folder. Returns where it
    went, or None when it was removed."""
    aside = path.parent / ASIDE
    try:
        aside.mkdir(exist_ok=True)
        path.rename(aside / path.name)
        return aside / path.name
    except OSError:
        path.unlink(missing_ok=True)
        return None


def _header(line: bytes) -> dict[str, Any]:
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("the header line is not a JSON object")
    return header
