"""Turn one audio message into model-ready PCM, or a precise reason to dead-letter it.

Runs on the worker's decode threads. Never raises for bad input: every failure becomes a
`Rejected` with a stable reason code (for metrics and the DLQ header) and a detail line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundscape.audio_codec import AudioDecodeError, decode
from soundscape.envelope import CHUNK_SECONDS, ChunkEnvelope, EnvelopeError, sha256_hex

MODEL_SAMPLE_RATE = 32_000
MODEL_SAMPLES = MODEL_SAMPLE_RATE * CHUNK_SECONDS

#: Stable reason codes (DLQ `reason` header, metric label).
REASONS = (
    "bad_headers",
    "unsupported_schema",
    "sha256_mismatch",
    "oversize",
    "undecodable_audio",
    "format_mismatch",
    "wrong_length",
    "non_finite_audio",
)


@dataclass(frozen=True, slots=True)
class Decoded:
    envelope: ChunkEnvelope
    pcm: np.ndarray  # float32 [MODEL_SAMPLES], mono, 32 kHz
    decode_ms: float


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


def decode_chunk(
    headers: list[tuple[str, bytes]] | None,
    payload: bytes | None,
    key: bytes | None,
    max_payload_bytes: int,
) -> Decoded | Rejected:
    import time

    started = time.perf_counter()
    payload = payload or b""
    try:
        envelope = ChunkEnvelope.from_headers(headers, None, key)
    except EnvelopeError as exc:
        return Rejected("unsupported_schema" if exc.unsupported_schema else "bad_headers", str(exc))
    if len(payload) > max_payload_bytes:
        return Rejected("oversize", f"payload {len(payload):,} bytes > limit {max_payload_bytes:,}")
    digest = sha256_hex(payload)
    if digest != envelope.sha256:
        return Rejected("sha256_mismatch", f"payload hashes to {digest}, header {envelope.sha256}")
    try:
        audio = decode(payload, envelope.codec)
    except AudioDecodeError as exc:
        reason = "format_mismatch" if "headers say" in str(exc) else "undecodable_audio"
        return Rejected(reason, str(exc))
    if audio.sample_rate != envelope.sample_rate or audio.channels != envelope.channels:
        return Rejected(
            "format_mismatch",
            f"payload is {audio.sample_rate} Hz x {audio.channels} ch, headers say "
            f"{envelope.sample_rate} Hz x {envelope.channels} ch",
        )
    expected = envelope.sample_rate * CHUNK_SECONDS
    if audio.frames != expected:
        return Rejected(
            "wrong_length",
            f"{audio.frames} frames at {audio.sample_rate} Hz; a chunk is exactly "
            f"{CHUNK_SECONDS} s = {expected} frames",
        )
    pcm = audio.mono()
    if not np.all(np.isfinite(pcm)):
        return Rejected("non_finite_audio", "audio contains NaN or Inf samples")
    if audio.sample_rate != MODEL_SAMPLE_RATE:
        pcm = resample(pcm, audio.sample_rate)
    return Decoded(envelope, np.ascontiguousarray(pcm, dtype=np.float32),
                   (time.perf_counter() - started) * 1e3)


def resample(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """To the model rate with soxr (high quality), exactly MODEL_SAMPLES long."""
    import soxr

    out = soxr.resample(pcm, sample_rate, MODEL_SAMPLE_RATE, quality="HQ")
    if out.size > MODEL_SAMPLES:
        return out[:MODEL_SAMPLES]
    return np.pad(out, (0, MODEL_SAMPLES - out.size))
