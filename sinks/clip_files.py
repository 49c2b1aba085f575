"""Which chunks the clip keeper keeps, and where their audio goes on disk.

A clip is the chunk's payload exactly as the station encoded it (FLAC by default, which
browsers play), written under `clips.dir` as STATION/YYYY-MM-DD/CHUNK_ID.EXT. Writes are
atomic (a temporary file, fsync, rename), so a crash leaves either the whole clip or none,
and rewriting the same chunk is harmless: the keeper is idempotent on chunk_id.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Literal

from soundscape.clip_store import clips_dir, resolve
from soundscape.durable_write import write_durably
from soundscape.messages import Detection

__all__ = ["Reason", "clips_dir", "keep_reason", "relative_path", "remove_clip", "resolve",
           "sampled", "write_clip"]

Reason = Literal["detection", "negative"]
_EXTENSIONS = {"flac": "flac", "wav": "wav"}


def keep_reason(detection: Detection, min_confidence: float,
                negative_sample_rate: float) -> Reason | None:
    """detection: a label above its threshold at least min_confidence probable; negative:
    a chunk with no detection at all, in the sample chosen by its id (the same chunks on
    every replay and after every restart)."""
    if any(d.probability >= min_confidence for d in detection.detections):
        return "detection"
    if detection.detections:
        return None  # detected, but not confidently: neither a good example nor a negative
    return "negative" if sampled(detection.chunk_id, negative_sample_rate) else None


def sampled(chunk_id: uuid.UUID, rate: float) -> bool:
    """True for a `rate` share of chunk ids, uniformly (a uuid5's bits are a hash)."""
    return (chunk_id.int >> 64) / 2**64 < rate


def relative_path(station_id: str, chunk_start_ns: int, chunk_id: uuid.UUID, codec: str) -> str:
    day = dt.datetime.fromtimestamp(chunk_start_ns / 1e9, dt.UTC).strftime("%Y-%m-%d")
    return f"{station_id}/{day}/{chunk_id}.{_EXTENSIONS[codec]}"


def write_clip(root: Path, relative: str, data: bytes) -> int:
    """Write atomically and durably; returns the size."""
    target = resolve(root, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_durably(target, data, target.with_name(f".{target.name}.{os.getpid()}.tmp"))
    return len(data)


def remove_clip(root: Path, relative: str) -> bool:
    """Delete a clip's file; False when it was already gone."""
    try:
        resolve(root, relative).unlink()
        return True
    except FileNotFoundError:
        return False
