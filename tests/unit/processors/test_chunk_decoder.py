from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from soundscape.audio_codec import encode
from soundscape.envelope import ChunkEnvelope
from soundscape.audio_stats import audio_stats
from soundscape.processors.chunk_decoder import (
    MODEL_SAMPLES,
    Decoded,
    Rejected,
    decode_chunk,
    decode_measured,
)
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


def test_decode_measured_adds_the_audio_statistics_at_the_models_rate() -> None:
    """The worker's decode threads measure each chunk's statistics (at the rate it was
    resampled to); a refused chunk stays a refusal."""
    plain = decode_chunk(*message(encode(field_chunk(2), 32000)), LIMIT)
    measured = decode_measured(*message(encode(field_chunk(2), 32000)), LIMIT)
    assert isinstance(plain, Decoded) and plain.audio is None
    assert isinstance(measured, Decoded) and measured.audio == audio_stats(plain.pcm, 32000)
    t = np.arange(320_000) / 32_000
    tone = (0.3 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    at_48k = decode_measured(*message(encode(tone, 32000)), LIMIT, target_rate=48_000)
    assert isinstance(at_48k, Decoded)
    assert at_48k.audio == audio_stats(at_48k.pcm, 48_000)
    assert abs(at_48k.audio.spectral_centroid_hz - 2000) < 100
    refused = decode_measured(*message(b"not audio"), LIMIT)
    assert isinstance(refused, Rejected)


def test_48k_stereo_is_downmixed_and_resampled() -> None:
    t = np.arange(480_000) / 48_000
    left = 0.3 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    result = decode_chunk(*message(encode(stereo, 48000), 48000, 2), LIMIT)
    assert isinstance(result, Decoded) and result.pcm.shape == (MODEL_SAMPLES,)
    spectrum = np.abs(np.fft.rfft(result.pcm))
    assert abs(np.argmax(spectrum) * 32000 / MODEL_SAMPLES - 1000) < 2


def _float_wav(audio: np.ndarray, rate: int = 32000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _nan_wav(count: int = 100_000) -> bytes:
    audio = np.zeros(320_000, np.float32)
    audio[:count] = np.nan
    return _float_wav(audio)


def _bomb(seconds: int = 60, channels: int = 8, rate: int = 384_000) -> bytes:
    """A small FLAC that declares a long, wide, fast stream of silence."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as handle:
        block = np.zeros((rate, channels), np.int16)
        for _ in range(seconds):
            handle.write(block)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: message(encode(field_chunk(2)[:100_000], 32000)), "wrong_length"),
        (lambda: message(encode(field_chunk(2)[:318_000], 32000)), "wrong_length"),  # 62.5 ms short
        (lambda: message(_bomb(seconds=12, channels=2, rate=48_000), 48_000, 2), "wrong_length"),
        (lambda: message(encode(field_chunk(2), 32000))[:2] + (None,), "bad_headers"),  # no key
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


def test_a_decompression_bomb_is_refused_from_its_declared_length() -> None:
    """60 s x 8 ch x 384 kHz declared in a small payload: refused before decoding."""
    payload = _bomb()
    assert len(payload) < 2_000_000
    result = decode_chunk(*message(payload, 384_000, 8), LIMIT)
    assert isinstance(result, Rejected) and result.reason == "wrong_length", result
    assert "declares 23040000 frames" in result.detail


def test_a_chunk_within_the_length_tolerance_is_padded_or_trimmed() -> None:
    short = decode_chunk(*message(encode(field_chunk(4)[:319_000], 32000)), LIMIT)  # 31 ms short
    long = decode_chunk(*message(encode(np.concatenate([field_chunk(4), field_chunk(5)[:900]]),
                                        32000)), LIMIT)
    assert isinstance(short, Decoded) and isinstance(long, Decoded)
    assert short.pcm.shape == long.pcm.shape == (MODEL_SAMPLES,)
    assert short.repairs.padded_frames == 1000 and not np.any(short.pcm[-1000:])
    assert long.repairs.trimmed_frames == 900
    refused = decode_chunk(*message(encode(field_chunk(4)[:319_000], 32000)), LIMIT,
                           length_tolerance_ms=0)
    assert isinstance(refused, Rejected) and refused.reason == "wrong_length"


def test_a_few_non_finite_samples_are_zeroed_and_counted() -> None:
    result = decode_chunk(*message(_nan_wav(count=300), codec="wav"), LIMIT)
    assert isinstance(result, Decoded), result
    assert result.repairs.zeroed_samples == 300 and np.all(np.isfinite(result.pcm))
    refused = decode_chunk(*message(_nan_wav(count=300), codec="wav"), LIMIT,
                           max_nonfinite_fraction=0.0)
    assert isinstance(refused, Rejected) and refused.reason == "non_finite_audio"


def test_float_audio_far_beyond_full_scale_is_clipped_and_reported_as_clipping() -> None:
    """The PCM times 1000 once crash-looped the worker in its statistics."""
    from soundscape.processors.audio_stats import audio_stats

    loud = field_chunk(6) * 1000
    result = decode_chunk(*message(_float_wav(loud), codec="wav"), LIMIT)
    assert isinstance(result, Decoded), result
    assert result.repairs.clipped_samples > 0
    assert float(np.max(np.abs(result.pcm))) <= 1.0
    stats = audio_stats(result.pcm, 32000)
    assert stats.clipping_ratio > 0.5 and stats.peak_dbfs <= 0.0
    # and the statistics take such audio directly, too
    assert audio_stats(loud.astype(np.float32), 32000).clipping_ratio > 0.5


@pytest.mark.parametrize("start_ns", [0, 946_684_799 * 10**9, 2**63 - 1])
def test_implausible_chunk_times_are_refused(start_ns: int) -> None:
    from soundscape.intake import TimeWindow
    from soundscape.settings import IntakeSettings

    payload = encode(field_chunk(1), 32000)
    env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=start_ns,
                                    sample_rate=32000, seq=0, captured_at=0)
    times = TimeWindow.from_settings(IntakeSettings())
    result = decode_chunk(env.to_headers(), payload, env.key, LIMIT, times=times)
    assert isinstance(result, Rejected) and result.reason == "implausible_time", result
    fine = decode_chunk(*message(payload), LIMIT, times=times)  # 2001-09-09
    assert isinstance(fine, Decoded)


def test_the_bombs_peak_memory_stays_within_the_stated_bound() -> None:
    """Measured in a fresh process: ru_maxrss grows by less than 64 MB for the bomb with
    headers that match it (so only the declared length stops it), where decoding it in
    full would take 737 MB of float32; and for the largest chunk the envelope allows
    (10 s x 8 ch x 384 kHz, decoded and resampled), where a whole-stream decode takes
    123 MB before the mono mix."""
    import subprocess
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".flac") as handle, \
            tempfile.NamedTemporaryFile(suffix=".flac") as widest:
        handle.write(_bomb())
        handle.flush()
        widest.write(_bomb(seconds=10))
        widest.flush()
        script = f"""
import resource, sys
from pathlib import Path
from soundscape.envelope import ChunkEnvelope
from soundscape.processors.chunk_decoder import decode_chunk
payload = Path({handle.name!r}).read_bytes()
env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                sample_rate=384_000, channels=8, seq=0, captured_at=10**18)
decode_chunk(env.to_headers(), b"x", env.key, 8 << 20)  # warm imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for length_tolerance_ms in (50.0, 1000.0):
    result = decode_chunk(env.to_headers(), payload, env.key, 8 << 20,
                          length_tolerance_ms=length_tolerance_ms)
    assert result.reason == "wrong_length", result
payload = Path({widest.name!r}).read_bytes()
env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                sample_rate=384_000, channels=8, seq=0, captured_at=10**18)
result = decode_chunk(env.to_headers(), payload, env.key, 8 << 20)
assert result.pcm.shape == (320_000,), result
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024)
"""
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True)
    grown_mb = int(out.stdout.strip())
    print(f"peak RSS growth for the bomb and the widest chunk: {grown_mb} MB")
    assert grown_mb < 64, f"peak RSS grew {grown_mb} MB"
