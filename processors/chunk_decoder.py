"""Turn one audio message into model-ready PCM, or a precise reason to dead-letter it.

Runs on the worker's decode threads. Never raises: every failure becomes a `Rejected`
with a stable reason code (for metrics and the DLQ header) and a detail line. What can
be refused from the headers and the stream's declared format is refused before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from soundscape.audio_codec import AudioDecodeError, AudioInfo, decode_mono
from soundscape.audio_stats import AudioStats, audio_stats
from soundscape.chunk_signing import SIGNATURE_REASONS, SignatureCheck, verify
from soundscape.envelope import CHUNK_SECONDS, ChunkEnvelope, EnvelopeError, sha256_hex
from soundscape.intake import IMPLAUSIBLE_TIME, TimeWindow
from soundscape.settings import FrontendSettings

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
    IMPLAUSIBLE_TIME,
    *SIGNATURE_REASONS,
    "internal_error",
)

DEFAULT_LENGTH_TOLERANCE_MS = FrontendSettings().length_tolerance_ms
DEFAULT_MAX_NONFINITE_FRACTION = FrontendSettings().max_nonfinite_fraction


@dataclass(frozen=True, slots=True)
class Repairs:
    """What was mended in a chunk that was accepted (counted in the worker's metrics)."""

    padded_frames: int = 0  # zeros added at the end (a chunk a little short)
    trimmed_frames: int = 0  # frames cut from the end (a chunk a little long)
    zeroed_samples: int = 0  # NaN or Inf samples set to 0
    clipped_samples: int = 0  # float samples beyond +-1 set to +-1

    def __bool__(self) -> bool:
        return bool(self.padded_frames or self.trimmed_frames or self.zeroed_samples
                    or self.clipped_samples)


@dataclass(frozen=True, slots=True)
class Decoded:
    envelope: ChunkEnvelope
    pcm: np.ndarray  # float32 [10 s at the model's rate], mono, finite, in [-1, 1]
    decode_ms: float
    repairs: Repairs = Repairs()
    #: The chunk's audio statistics, measured on the decode thread (the worker's
    #: `decode_measured`) so the scoring thread does not; None when not measured.
    audio: AudioStats | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejected = Rejected(reason, detail)


def decode_chunk(
    headers: list[tuple[str, bytes]] | None,
    payload: bytes | None,
    key: bytes | None,
    max_payload_bytes: int,
    *,
    target_rate: int = MODEL_SAMPLE_RATE,
    min_rate: int = 0,
    length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
    times: TimeWindow | None = None,
    signatures: SignatureCheck | None = None,
) -> Decoded | Rejected:
    """`target_rate`: the bundle's rate (chunks are resampled to it here, on the decode
    threads: one place, one resampler). `min_rate`: chunks recorded below it are refused,
    since upsampling cannot bring back the bands the model listens to.

    Never raises: anything unexpected is `internal_error`, so one chunk cannot stop the
    worker. Memory per chunk is bounded by the envelope's limits, not by what the
    payload declares: at most 10 s + tolerance of mono float32 at the chunk's rate
    (15.4 MB at 384 kHz) plus one decoding block (see `audio_codec.decode_mono`).
    """
    try:
        return _decode(headers, payload, key, max_payload_bytes, target_rate, min_rate,
                       length_tolerance_ms, max_nonfinite_fraction, times, signatures)
    except _Refused as refused:
        return refused.rejected
    except Exception as exc:  # noqa: BLE001 - a chunk never takes the worker down
        return Rejected("internal_error", describe_exception(exc))


def describe_exception(exc: BaseException) -> str:
    """Type, message and where: enough for a DLQ header to point at the bug."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {str(exc)[:500]}{where}"


def _decode(
    headers: list[tuple[str, bytes]] | None,
    payload: bytes | None,
    key: bytes | None,
    max_payload_bytes: int,
    target_rate: int,
    min_rate: int,
    length_tolerance_ms: float,
    max_nonfinite_fraction: float,
    times: TimeWindow | None,
    signatures: SignatureCheck | None = None,
) -> Decoded:
    import time

    started = time.perf_counter()
    payload = payload or b""
    if key is None:
        raise _Refused("bad_headers", "message has no key; a chunk is keyed by its station_id")
    try:
        envelope = ChunkEnvelope.from_headers(headers, None, key)
    except EnvelopeError as exc:
        raise _Refused("unsupported_schema" if exc.unsupported_schema else "bad_headers",
                       str(exc)) from None
    if times is not None and (problem := times.problem("chunk_start", envelope.chunk_start)):
        raise _Refused(IMPLAUSIBLE_TIME, problem)
    if envelope.sample_rate < min_rate:
        raise _Refused("sample_rate_too_low",
                       f"recorded at {envelope.sample_rate} Hz; this model needs at least "
                       f"{min_rate} Hz: upsampling cannot restore the bands above "
                       f"{envelope.sample_rate // 2} Hz it listens to")
    if len(payload) > max_payload_bytes:
        raise _Refused("oversize", f"payload {len(payload):,} bytes > limit {max_payload_bytes:,}")
    digest = sha256_hex(payload)
    if digest != envelope.sha256:
        raise _Refused("sha256_mismatch", f"payload hashes to {digest}, header {envelope.sha256}")
    # After the hash: the signature covers the sha256 header, so it now covers the payload.
    if signatures is not None and (refused := verify(envelope, signatures.lookup,
                                                     signatures.require)):
        raise _Refused(*refused)

    expected = envelope.sample_rate * CHUNK_SECONDS
    tolerance = int(round(length_tolerance_ms * envelope.sample_rate / 1000))

    def check(info: AudioInfo) -> None:
        """Refuse from the stream header alone, before a sample is decoded."""
        if info.sample_rate != envelope.sample_rate or info.channels != envelope.channels:
            raise _Refused(
                "format_mismatch",
                f"payload is {info.sample_rate} Hz x {info.channels} ch, headers say "
                f"{envelope.sample_rate} Hz x {envelope.channels} ch",
            )
        if abs(info.frames - expected) > tolerance:
            raise _Refused(
                "wrong_length",
                f"payload declares {info.frames} frames at {info.sample_rate} Hz; a chunk is "
                f"{CHUNK_SECONDS} s = {expected} frames (within {length_tolerance_ms:g} ms)",
            )

    try:
        audio = decode_mono(payload, envelope.codec, check, max_frames=expected + tolerance)
    except AudioDecodeError as exc:
        reason = "format_mismatch" if "headers say" in str(exc) else "undecodable_audio"
        raise _Refused(reason, str(exc)) from None
    pcm, repairs = repair(audio.samples, expected, max_nonfinite_fraction)
    if audio.sample_rate != target_rate:
        pcm = resample(pcm, audio.sample_rate, target_rate)
    return Decoded(envelope, np.ascontiguousarray(pcm, dtype=np.float32),
                   (time.perf_counter() - started) * 1e3, repairs)


def repair(pcm: np.ndarray, frames: int, max_nonfinite_fraction: float) -> tuple[np.ndarray, Repairs]:
    """Exactly `frames` long (pad with zeros or trim the end), finite (a few NaN/Inf
    zeroed, more refused as `non_finite_audio`) and within [-1, 1] (clipped, so that
    a float WAV at 1000x full scale reads as clipping, not as an exception later)."""
    padded = max(0, frames - pcm.size)
    trimmed = max(0, pcm.size - frames)
    if trimmed:
        pcm = pcm[:frames]
    bad = ~np.isfinite(pcm)
    zeroed = int(np.count_nonzero(bad))
    if zeroed > max_nonfinite_fraction * frames:
        raise _Refused("non_finite_audio",
                       f"{zeroed} of {pcm.size} samples are NaN or Inf ({zeroed / pcm.size:.2%}; "
                       f"at most {max_nonfinite_fraction:.2%} are zeroed)")
    if zeroed:
        pcm = np.where(bad, np.float32(0.0), pcm)
    beyond = np.abs(pcm) > 1.0
    clipped = int(np.count_nonzero(beyond))
    if clipped:
        pcm = np.clip(pcm, -1.0, 1.0)
    if padded:
        pcm = np.pad(pcm, (0, padded))
    return pcm.astype(np.float32, copy=False), Repairs(padded, trimmed, zeroed, clipped)


def resample(pcm: np.ndarray, sample_rate: int, target_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """To the model rate with soxr (high quality), exactly 10 s long."""
    import soxr

    samples = target_rate * CHUNK_SECONDS
    # The filter rings past full scale on clipped input (up to ~1.3): clip again so the
    # [-1, 1] promise of `repair` holds for what the models see.
    out = np.clip(soxr.resample(pcm, sample_rate, target_rate, quality="HQ"), -1.0, 1.0)
    if out.size > samples:
        return out[:samples]
    return np.pad(out, (0, samples - out.size))


def decode_measured(*args: Any, **kwargs: Any) -> Decoded | Rejected:
    """`decode_chunk`, then the decoded chunk's audio statistics (outside `decode_ms`):
    the worker's decode threads do both while the previous batch is scored."""
    decoded = decode_chunk(*args, **kwargs)
    if isinstance(decoded, Decoded):
        rate = kwargs.get("target_rate") or MODEL_SAMPLE_RATE
        decoded = replace(decoded, audio=audio_stats(decoded.pcm, rate))
    return decoded
