"""Encode and decode chunk payloads (FLAC by default, PCM16 WAV allowed).

Stations encode, workers decode; both sides use libsndfile through soundfile, which a
Raspberry Pi has as a Debian package and which needs neither PyTorch nor librosa.
"""

from __future__ import annotations

import io
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


def decode(payload: bytes, codec: Codec = "flac") -> DecodedAudio:
    """Decode to float32 frames x channels; anything unreadable is an AudioDecodeError."""
    if codec not in _FORMATS:
        raise AudioDecodeError(f"unknown codec {codec!r}")
    if not payload:
        raise AudioDecodeError("payload is empty")
    try:
        with sf.SoundFile(io.BytesIO(payload)) as handle:
            if handle.format != _FORMATS[codec][0]:
                raise AudioDecodeError(
                    f"payload is {handle.format}, headers say {codec.upper()}"
                )
            samples = handle.read(dtype="float32", always_2d=True)
            expected = handle.frames
            rate = handle.samplerate
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioDecodeError(f"cannot decode {codec.upper()} payload: {exc}") from None
    if samples.shape[0] != expected:
        raise AudioDecodeError(
            f"{codec.upper()} payload truncated: {samples.shape[0]} of {expected} frames"
        )
    return DecodedAudio(samples=samples, sample_rate=int(rate))
