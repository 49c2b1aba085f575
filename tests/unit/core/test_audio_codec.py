from __future__ import annotations

import numpy as np
import pytest

from soundscape.audio_codec import AudioDecodeError, decode, encode, to_int16
from soundscape.synthetic import field_chunk


@pytest.mark.parametrize("codec", ["flac", "wav"])
def test_round_trip_is_lossless_at_16_bit(codec: str) -> None:
    audio = field_chunk(seed=7)
    decoded = decode(encode(audio, 32000, codec), codec)  # type: ignore[arg-type]
    assert decoded.sample_rate == 32000
    assert decoded.samples.shape == (320_000, 1)
    assert np.array_equal(to_int16(decoded.samples), to_int16(audio))


def test_stereo_and_mono_mixdown() -> None:
    stereo = np.stack([np.full(1000, 0.5), np.full(1000, -0.5)], axis=1).astype(np.float32)
    decoded = decode(encode(stereo, 48000, "flac"), "flac")
    assert decoded.channels == 2
    assert np.allclose(decoded.mono(), 0.0, atol=1e-4)


def test_generated_chunk_is_field_sized() -> None:
    # The foundation's throughput figures assume ~400 KB FLAC chunks.
    size = len(encode(field_chunk(seed=1), 32000, "flac"))
    assert 300_000 < size < 550_000


@pytest.mark.parametrize(
    ("payload", "codec", "message"),
    [
        (b"", "flac", "payload is empty"),
        (b"not audio at all" * 10, "flac", "cannot decode FLAC"),
        (None, "wav", "payload is WAV, headers say FLAC"),
    ],
)
def test_bad_payloads_raise_decode_error(payload, codec, message) -> None:  # type: ignore[no-untyped-def]
    if payload is None:  # a WAV payload labelled FLAC
        payload, codec = encode(np.zeros(100, np.float32), 32000, "wav"), "flac"
    with pytest.raises(AudioDecodeError, match=message):
        decode(payload, codec)


def test_truncated_flac_is_detected() -> None:
    payload = encode(field_chunk(seed=3), 32000, "flac")
    with pytest.raises(AudioDecodeError):
        decode(payload[: len(payload) // 2], "flac")


def test_nan_audio_is_refused_at_encode() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode(np.array([0.0, np.nan], np.float32), 32000)
