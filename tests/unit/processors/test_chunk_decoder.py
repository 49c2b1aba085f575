from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from soundscape.audio_codec import encode
from soundscape.envelope import ChunkEnvelope
from soundscape.processors.chunk_decoder import MODEL_SAMPLES, Decoded, Rejected, decode_chunk
from soundscape.synthetic import field_chunk

LIMIT = 8 * 1024 * 1024


def message(payload: bytes, sample_rate: int = 32000, channels: int = 1, codec: str = "flac"):  # type: ignore[no-untyped-def]
    env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                    sample_rate=sample_rate, channels=channels,
                                    codec=codec, seq=0, captured_at=10**18)  # type: ignore[arg-type]
    return env.to_headers(), payload, env.key


def test_good_chunk_decodes_to_model_pcm() -> None:
    result = decode_chunk(*message(encode(field_chunk(1), 32000)), LIMIT)
    assert isinstance(result, Decoded)
    assert result.pcm.shape == (MODEL_SAMPLES,) and result.pcm.dtype == np.float32


def test_48k_stereo_is_downmixed_and_resampled() -> None:
    t = np.arange(480_000) / 48_000
    left = 0.3 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    result = decode_chunk(*message(encode(stereo, 48000), 48000, 2), LIMIT)
    assert isinstance(result, Decoded) and result.pcm.shape == (MODEL_SAMPLES,)
    spectrum = np.abs(np.fft.rfft(result.pcm))
    assert abs(np.argmax(spectrum) * 32000 / MODEL_SAMPLES - 1000) < 2


def _nan_wav() -> bytes:
    buffer = io.BytesIO()
    audio = np.zeros(320_000, np.float32)
    audio[100] = np.nan
    sf.write(buffer, audio, 32000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: message(encode(field_chunk(2)[:100_000], 32000)), "wrong_length"),
        (lambda: message(b"garbage" * 100), "undecodable_audio"),
        (lambda: message(encode(field_chunk(3), 32000)[:50_000]), "undecodable_audio"),
        (lambda: message(encode(field_chunk(3), 32000), sample_rate=16000), "format_mismatch"),
        (lambda: message(_nan_wav(), codec="wav"), "non_finite_audio"),
        (lambda: (message(b"x")[0], b"y", b"st-1"), "sha256_mismatch"),
        (lambda: ([("station_id", b"st-1")], b"x", b"st-1"), "bad_headers"),
        (lambda: ([(k, b"2" if k == "schema_version" else v) for k, v in message(b"x")[0]],
                  b"x", b"st-1"), "unsupported_schema"),
        (lambda: (message(b"z" * 2000)[0], b"z" * 2000, b"st-1"), "oversize"),
    ],
)
def test_bad_chunks_get_a_precise_reason(build, reason: str) -> None:  # type: ignore[no-untyped-def]
    headers, payload, key = build()
    result = decode_chunk(headers, payload, key, LIMIT if reason != "oversize" else 1000)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result.detail


def test_a_windowed_bundle_gets_pcm_at_its_own_rate() -> None:
    t = np.arange(320_000) / 32_000
    tone = (0.3 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    result = decode_chunk(*message(encode(tone, 32000)), LIMIT, target_rate=48_000, min_rate=16_000)
    assert isinstance(result, Decoded) and result.pcm.shape == (480_000,)
    spectrum = np.abs(np.fft.rfft(result.pcm))
    assert abs(np.argmax(spectrum) * 48_000 / 480_000 - 2000) < 2


def test_a_chunk_below_the_models_lowest_rate_is_refused_with_a_reason() -> None:
    chunk = np.zeros(80_000, np.float32)
    result = decode_chunk(*message(encode(chunk, 8000), 8000), LIMIT, target_rate=48_000,
                          min_rate=16_000)
    assert isinstance(result, Rejected) and result.reason == "sample_rate_too_low"
    assert "8000 Hz" in result.detail and "16000 Hz" in result.detail
