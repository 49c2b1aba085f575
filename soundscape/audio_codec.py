"""Encode and decode chunk payloads (FLAC by default, PCM16 WAV allowed).

Stations encode, workers decode; both sides use libsndfile through soundfile, which a
Raspberry Pi has as a Debian package and which needs neither PyTorch nor librosa.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from soundscape.envelope import CODECS, Codec

_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}


class AudioDecodeError(ValueError):
    """A payload that is not valid audio in the codec its headers claim."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: np.ndarray  # float32, shape (frames, channels), in [-1, 1]
    sample_rate: int

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    def mono(self) -> np.ndarray:
        return self.samples.mean(axis=1) if self.channels > 1 else self.samples[:, 0]


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] (clipped) or int16 as it is, to int16 frames x channels."""
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"audio must be 1-D or (frames, channels), got shape {array.shape}")
    if array.dtype == np.int16:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"audio must be float or int16, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError("audio contains NaN or Inf")
    return np.round(np.clip(array, -1.0, 1.0) * 32767.0).astype(np.int16)


def encode(samples: np.ndarray, sample_rate: int, codec: Codec = "flac") -> bytes:
    if codec not in _FORMATS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    fmt, subtype = _FORMATS[codec]
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(samples), sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a payload's stream header declares, read without decoding a sample."""

    frames: int
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class DecodedMono:
    samples: np.ndarray  # float32 [frames], the channels' mean, as decoded (not clipped)
    sample_rate: int
    channels: int


#: Frames decoded at a time by `decode_mono`: its memory is one block of all channels
#: plus the mono result, never the whole multi-channel stream.
BLOCK_FRAMES = 65_536


def decode_mono(
    payload: bytes,
    codec: Codec,
    check: Callable[[AudioInfo], None],
    max_frames: int,
) -> DecodedMono:
    """Decode to mono in blocks, after `check` has seen the declared frames, rate and
    channels (it raises AudioDecodeError to refuse the stream before any decoding).

    At most `max_frames` are decoded whatever the stream declares: a few hundred
    bytes of FLAC can declare hours of silence, and memory must not follow the
    declaration. Peak memory: 4 x max_frames bytes + one block of every channel.
    """
    try:
        with _open(payload, codec) as handle:
            info = AudioInfo(int(handle.frames), int(handle.samplerate), int(handle.channels))
            check(info)
            wanted = min(info.frames, max_frames)
            mono = np.empty(wanted, dtype=np.float32)
            block = np.empty((min(BLOCK_FRAMES, max(wanted, 1)), info.channels), dtype=np.float32)
            done = 0
            while done < wanted:
                count = min(len(block), wanted - done)
                got = handle.read(count, dtype="float32", always_2d=True, out=block[:count])
                if len(got) == 0:
                    break
                if info.channels == 1:
                    mono[done : done + len(got)] = got[:, 0]
                else:
                    np.mean(got, axis=1, out=mono[done : done + len(got)])
                done += len(got)
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise AudioDecodeError(f"cannot decode {codec.upper()} payload: {exc}") from None
    if done != wanted:
        raise AudioDecodeError(f"{codec.upper()} payload truncated: {done} of {info.frames} frames")
    return DecodedMono(mono, info.sample_rate, info.channels)


def _open(payload: bytes, codec: Codec) -> sf.SoundFile:
    """The payload as a sound file of the format its headers name (else AudioDecodeError)."""
    if codec not in _FORMATS:
        raise AudioDecodeError(f"unknown codec {codec!r}")
    if not payload:
        raise AudioDecodeError("payload is empty")
    handle = sf.SoundFile(io.BytesIO(payload))
    if handle.format != _FORMATS[codec][0]:
        handle.close()
        raise AudioDecodeError(f"payload is {handle.format}, headers say {codec.upper()}")
    return handle


MAX_DECODE_SAMPLES = 1 << 26
"""`decode` refuses payloads declaring more (256 MB of float32): a 40-byte header must
not be able to ask for gigabytes. The worker uses `decode_mono`, bounded per chunk."""


def decode(payload: bytes, codec: Codec = "flac", max_samples: int = MAX_DECODE_SAMPLES) -> DecodedAudio:
    """Decode to float32 frames x channels; anything unreadable or larger than
    `max_samples` (frames x channels) is an AudioDecodeError."""
    try:
        with _open(payload, codec) as handle:
            if handle.frames * handle.channels > max_samples:
                raise AudioDecodeError(
                    f"{codec.upper()} payload declares {handle.frames} frames x "
                    f"{handle.channels} channels, more than the {max_samples} samples allowed"
                )
            samples = handle.read(dtype="float32", always_2d=True)
            expected = handle.frames
            rate = handle.samplerate
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, MemoryError) as exc:
        raise AudioDecodeError(f"cannot decode {codec.upper()} payload: {exc}") from None
    if samples.shape[0] != expected:
        raise AudioDecodeError(
            f"{codec.upper()} payload truncated: {samples.shape[0]} of {expected} frames"
        )
    return DecodedAudio(samples=samples, sample_rate=int(rate))
