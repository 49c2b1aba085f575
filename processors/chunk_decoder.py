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
    "sample_rate_too_low",
)


@dataclass(frozen=True, slots=True)
class Decoded:
    envelope: ChunkEnvelope
    pcm: np.ndarray  # float32 [10 s at the model's rate], mono
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
    *,
    target_rate: int = MODEL_SAMPLE_RATE,
    min_rate: int = 0,
) -> Decoded | Rejected:
    """`target_rate`: the bundle's rate (chunks are resampled to it here, on the decode
    threads: one place, one resampler). `min_rate`: chunks recorded below it are refused,
    since upsampling cannot bring back the bands the model listens to."""
    import time

    started = time.perf_counter()
    payload = payload or b""
    try:
        envelope = ChunkEnvelope.from_headers(headers, None, key)
    except EnvelopeError as exc:
        return Rejected("unsupported_schema" if exc.unsupported_schema else "bad_headers", str(exc))
    if envelope.sample_rate < min_rate:
        return Rejected("sample_rate_too_low",
                        f"recorded at {envelope.sample_rate} Hz; this model needs at least "
                        f"{min_rate} Hz: upsampling cannot restore the bands above "
                        f"{envelope.sample_rate // 2} Hz it listens to")
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
    if audio.sample_rate != target_rate:
        pcm = resample(pcm, audio.sample_rate, target_rate)
    return Decoded(envelope, np.ascontiguousarray(pcm, dtype=np.float32),
                   (time.perf_counter() - started) * 1e3)


def resample(pcm: np.ndarray, sample_rate: int, target_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """To the model rate with soxr (high quality), exactly 10 s long."""
    import soxr

    samples = target_rate * CHUNK_SECONDS
    out = soxr.resample(pcm, sample_rate, target_rate, quality="HQ")
    if out.size > samples:
        return out[:samples]
    return np.pad(out, (0, samples - out.size))
