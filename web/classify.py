"""Scoring an uploaded recording: any length and any format libsndfile reads, split into
10 s chunks at the model's rate and scored by the active bundle.

The web room does not load models: the wiring hands the app a `Classifier` (the worker's
scorer behind a lock). Uploads are read in pieces up to `web.max_upload_bytes`, decoded,
checked against `web.max_upload_seconds`, and their chunks kept for an hour under
`<state_dir>/web/uploads/ID/` so the answer's spectrogram URLs can be opened.
"""

from __future__ import annotations

import io
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import soundfile as sf

from soundscape.durable_write import write_durably

CHUNK_SECONDS = 10
#: A tail shorter than this is dropped rather than scored mostly as silence.
MIN_TAIL_SECONDS = 1.0
KEEP_UPLOADS_S = 3600
UPLOAD_ID_LENGTH = 16


class UploadError(ValueError):
    """What is wrong with an upload, and the HTTP status that says so."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LabelProbability:
    label: str
    probability: float
    common_name: str | None = None


@dataclass
class ChunkResult:
    index: int
    start_s: float
    end_s: float
    top: list[LabelProbability] = field(default_factory=list)
    detections: list[LabelProbability] = field(default_factory=list)


class Classifier(Protocol):
    """What the app needs of a model: its rate, its version, scores for 10 s chunks."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def version(self) -> str: ...

    def classify(self, chunks: np.ndarray) -> list[ChunkResult]:
        """chunks: float32 [n, 10 s at sample_rate]; results in that order (index 0..n-1)."""
        ...


def receive(stream: BinaryIO, target: Path, limit: int, piece: int = 1 << 20) -> int:
    """Copy an upload to `target`, refusing it (413) past `limit` bytes; returns its size."""
    size = 0
    with target.open("wb") as out:
        while True:
            block = stream.read(piece)
            if not block:
                return size
            size += len(block)
            if size > limit:
                raise UploadError(413, f"the upload is over the {limit:,}-byte limit "
                                       "(web.max_upload_bytes)")
            out.write(block)


def decode_upload(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    """Mono float32 and its rate; 415 for what is not audio, 413 for what is too long."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise UploadError(415, "not audio this server can read (WAV, FLAC, Ogg Vorbis or "
                               f"Opus, MP3): {str(exc)[:160]}") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise UploadError(415, "the file holds no audio")
    if info.frames / info.samplerate > max_seconds:
        raise UploadError(413, f"{info.frames / info.samplerate:.0f} s of audio is over the "
                               f"{max_seconds:.0f} s limit (web.max_upload_seconds)")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UploadError(415, f"the audio is damaged or truncated: {str(exc)[:160]}") from None
    if samples.shape[0] < info.frames:
        raise UploadError(415, f"the audio is damaged or truncated: {samples.shape[0]:,} of "
                               f"{info.frames:,} frames decoded")
    mono = samples.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise UploadError(415, "the audio holds NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def split(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """[n, 10 s at target_rate]: resampled, the last chunk padded with silence (a tail
    under MIN_TAIL_SECONDS is dropped unless it is all there is)."""
    if rate != target_rate:
        import soxr

        mono = soxr.resample(mono, rate, target_rate).astype(np.float32)
    length = CHUNK_SECONDS * target_rate
    full, tail = divmod(mono.size, length)
    keep_tail = tail >= MIN_TAIL_SECONDS * target_rate or full == 0
    count = full + (1 if keep_tail and tail else 0)
    chunks = np.zeros((max(count, 1), length), dtype=np.float32)
    usable = min(mono.size, count * length)
    chunks.reshape(-1)[:usable] = mono[:usable]
    return chunks


def new_upload_id() -> str:
    return secrets.token_hex(UPLOAD_ID_LENGTH // 2)


def keep_chunks(folder: Path, chunks: Iterable[np.ndarray], rate: int) -> None:
    """Each chunk as FLAC (0.flac, 1.flac, ...), for the spectrogram and player links."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(chunks):
        buffer = io.BytesIO()
        sf.write(buffer, chunk, rate, format="FLAC", subtype="PCM_16")
        write_durably(folder / f"{index}.flac", buffer.getvalue())


def forget_old(root: Path, older_than_s: float = KEEP_UPLOADS_S) -> int:
    """Remove uploads kept longer than an hour; returns how many."""
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def upload_chunk(root: Path, upload_id: str, index: int) -> Path:
    """The kept chunk of an upload; FileNotFoundError for a bad or expired id."""
    if len(upload_id) != UPLOAD_ID_LENGTH or not all(c in "0123456789abcdef" for c in upload_id):
        raise FileNotFoundError(upload_id)
    path = root / upload_id / f"{int(index)}.flac"
    if not path.is_file():
        raise FileNotFoundError(str(path))
    return path
