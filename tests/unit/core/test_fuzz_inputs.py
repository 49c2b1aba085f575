"""Property-based fuzzing of the audio pipeline's input parsers.

Everything a station (or anyone who can write to the audio topic) sends ends up in one
of these parsers: the chunk envelope, the audio codec, the worker's chunk decoder, the
audio statistics and the result-message schemas. Their contract is the same everywhere:
bad input is refused with the parser's own error type (or, for `decode_chunk`, a
`Rejected` with a precise reason), never with a stray exception that would take a worker
thread down or dead-letter a chunk as `internal_error`.

Every test is derandomized and runs without the example database, so CI sees the same
examples on every run; the example counts are sized to keep the whole file to seconds.
Failing cases are printed as small descriptions (a base payload's name plus a list of
mutations), not as 160 kB byte strings.
"""

from __future__ import annotations

import copy
import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from soundscape.audio_codec import (
    AudioDecodeError,
    AudioInfo,
    decode,
    decode_mono,
    encode,
)
from soundscape.envelope import (
    CHUNK_SECONDS,
    OPTIONAL_HEADERS,
    REQUIRED_HEADERS,
    ChunkEnvelope,
    Codec,
    EnvelopeError,
    chunk_id_for,
)
from soundscape.intake import TimeWindow
from soundscape.messages import (
    AudioStats,
    Detection,
    DriftReport,
    Heartbeat,
    LabelScore,
    MessageError,
    WindowScores,
    parse,
)
from soundscape.processors.audio_stats import CLIP_LEVEL, audio_stats
from soundscape.processors.chunk_decoder import REASONS, Decoded, Rejected, decode_chunk
from soundscape.sinks.sample_results import detection as sample_detection

RATE = 8_000  # low, so that a 10 s chunk is cheap to encode, hash, decode and resample
EXPECTED = RATE * CHUNK_SECONDS
BIG_LIMIT = 64 * 1024 * 1024
INT64_MAX = 2**63 - 1


def fuzz(max_examples: int) -> settings:
    """Deterministic settings for CI: same examples every run, no timing flakiness."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------------------
# Shared strategies and fixtures
# --------------------------------------------------------------------------------------

station_ids = st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)
nanos = st.integers(min_value=0, max_value=INT64_MAX)

#: Any text, lone surrogates included (often: a plain st.text() almost never has them):
#: the `Headers` type allows `str` values, and `parse` accepts `str`.
any_text = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.characters(categories=["Cs"]), st.characters(codec="ascii")),
             min_size=1, max_size=8).map("".join),
)

header_names = st.one_of(
    st.sampled_from(REQUIRED_HEADERS + OPTIONAL_HEADERS),
    st.sampled_from(["Station_Id", "codec ", "x-trace", ""]),
    any_text,
)

#: Header values as Kafka delivers them (bytes or None) and as a text that parses into
#: almost-valid fields: huge, negative and non-ASCII numbers, wrong codecs, non-UTF-8.
kafka_values = st.one_of(
    st.binary(max_size=40),
    st.none(),
    st.integers(min_value=-(2**80), max_value=2**80).map(lambda i: str(i).encode()),
    st.sampled_from([
        b"", b"flac", b"wav", b"FLAC", b"mp3", b"live", b"replay", b"0", b"1", b"-1", b"+1",
        b" 1", b"1.0", b"1e3", b"0x10", b"\xff\xfe", "\u0661".encode(), b"8000", b"384001",
        b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809", b"st-1",
        b"a" * 64, b"0" * 64,
    ]),
)

#: Everything a caller could pass as a value, including `str` and the wrong types.
any_values = st.one_of(
    kafka_values,
    any_text,
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
    st.binary(max_size=8).map(bytearray),
)


def header_lists(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Header lists with arbitrary entries (also malformed ones), or not a list at all."""
    entries = st.one_of(
        st.tuples(header_names, values),
        st.tuples(header_names, values),  # twice: well-formed pairs are the common case
        st.none(),
        st.integers(),
        any_text,
        st.tuples(header_names),
        st.tuples(header_names, values, values),
        st.lists(st.one_of(header_names, values), min_size=2, max_size=2),
        st.tuples(st.binary(max_size=10), values),
        st.tuples(st.integers(), values),
    )
    return st.one_of(
        st.lists(entries, max_size=16),
        st.lists(entries, max_size=16).map(tuple),
        st.none(),
        st.integers(),
        st.floats(),
        st.booleans(),
        any_text,
        st.binary(max_size=20),
        st.dictionaries(header_names, values, max_size=4),
    )


@st.composite
def valid_envelopes(draw: st.DrawFn) -> tuple[ChunkEnvelope, bytes]:
    """An envelope built the way a station builds it, for a random payload."""
    payload = draw(st.binary(min_size=1, max_size=64))
    env = ChunkEnvelope.for_payload(
        payload,
        station_id=draw(station_ids),
        chunk_start=draw(nanos),
        sample_rate=draw(st.integers(8_000, 384_000)),
        channels=draw(st.integers(1, 8)),
        codec=draw(st.sampled_from(["flac", "wav"])),
        seq=draw(nanos),
        captured_at=draw(nanos),
        source=draw(st.sampled_from(["live", "replay"])),
        gap_ns=draw(st.one_of(st.just(0), nanos)),
    ).with_published_at(draw(nanos))
    return env, payload


#: Header-list edits: (operation, index, value); indices wrap around the list.
header_edits = st.tuples(
    st.sampled_from(["replace", "drop", "duplicate", "append", "rename", "swap"]),
    st.integers(0, 31),
    st.integers(0, 31),
    header_names,
    any_values,
)


def edit_headers(headers: list[Any], edits: list[tuple[str, int, int, str, Any]]) -> list[Any]:
    """Apply header edits (as a producer bug or an attacker might) to a copy."""
    out = list(headers)
    for op, i, j, name, value in edits:
        if not out:
            out.append((name, value))
            continue
        i, j = i % len(out), j % len(out)
        if op == "replace":
            out[i] = (out[i][0], value)
        elif op == "drop":
            del out[i]
        elif op == "duplicate":
            out.insert(j, out[i])
        elif op == "append":
            out.insert(j, (name, value))
        elif op == "rename":
            out[i] = (name, out[i][1])
        elif op == "swap":
            out[i], out[j] = (out[i][0], out[j][1]), (out[j][0], out[i][1])
    return out


#: Byte-level payload mutations: (operation, position, small int, bytes). Positions below
#: 128 hit the stream headers, negative ones count from the end (truncation near the end
#: is what a flaky uplink produces), the rest land anywhere in the audio. "declare"
#: rewrites the stream's length field (FLAC total samples, WAV data size) from the bytes:
#: random bit flips would almost never hit it, and it is what a hostile payload forges.
payload_mutations = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "declare"]),
    st.one_of(st.integers(0, 127), st.integers(-4096, -1), st.integers(0, 2**31)),
    st.integers(0, 7),
    st.binary(min_size=1, max_size=16),
)


def mutate(payload: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    """Apply byte mutations in order; every position is wrapped into the current length."""
    data = bytearray(payload)
    for op, position, small, blob in ops:
        pos = position % (len(data) + 1)
        if op == "flip":
            if data:
                data[min(pos, len(data) - 1)] ^= 1 << small
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = blob
        elif op == "delete":
            del data[pos : pos + small + 1]
        elif op == "overwrite":
            data[pos : pos + len(blob)] = blob
        elif op == "declare":
            declared = int.from_bytes(blob[:5].ljust(5, b"\0"), "big")
            if data[:4] == b"fLaC" and len(data) >= 26:  # STREAMINFO, always the first block
                field = int.from_bytes(data[18:26], "big") & ~(2**36 - 1)
                data[18:26] = (field | declared & (2**36 - 1)).to_bytes(8, "big")
            elif 0 <= (at := data.find(b"data")) <= len(data) - 8:
                data[at + 4 : at + 8] = (declared & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(data)


def float_wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _signal(frames: int, channels: int, seed: int) -> np.ndarray:
    """A quiet bird-ish tone plus noise, well inside full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 1_500 * t)[:, None]
    return (tone + rng.normal(0, 0.05, (frames, channels))).astype(np.float32)


#: Real encoded payloads that mutations start from: 0.5 s ones for the codec tests,
#: 10 s ones (a full chunk) for the chunk decoder.
SHORT_BASES: dict[str, tuple[Codec, bytes]] = {
    "flac-mono": ("flac", encode(_signal(RATE // 2, 1, 1), RATE, "flac")),
    "flac-stereo": ("flac", encode(_signal(RATE // 2, 2, 2), RATE, "flac")),
    "wav-mono": ("wav", encode(_signal(RATE // 2, 1, 3), RATE, "wav")),
    "wav-stereo": ("wav", encode(_signal(RATE // 2, 2, 4), RATE, "wav")),
    "wav-float": ("wav", float_wav(_signal(RATE // 2, 1, 5))),
}
CHUNK_BASES: dict[str, tuple[Codec, int, bytes]] = {
    "flac-mono": ("flac", 1, encode(_signal(EXPECTED, 1, 6), RATE, "flac")),
    "flac-stereo": ("flac", 2, encode(_signal(EXPECTED, 2, 7), RATE, "flac")),
    "wav-mono": ("wav", 1, encode(_signal(EXPECTED, 1, 8), RATE, "wav")),
    "wav-float": ("wav", 1, float_wav(_signal(EXPECTED, 1, 9))),
}

#: A FLAC whose STREAMINFO declares 2**36 - 1 samples: a few hundred bytes that claim
#: 99 days of audio (256 GiB as float32). Kept as an explicit example so CI always
#: tries it, whatever the generated examples are.
FLAC_HUGE_DECLARATION = [("declare", 0, 0, b"\xff" * 5)]


def assert_clean_rejection(result: Rejected) -> None:
    assert result.reason in REASONS, result
    assert result.reason != "internal_error", result.detail


def assert_model_pcm(result: Decoded, target_rate: int) -> None:
    """What the model is promised: float32, mono, exactly 10 s, finite, in [-1, 1]."""
    pcm = result.pcm
    assert pcm.dtype == np.float32
    assert pcm.ndim == 1
    assert pcm.shape == (target_rate * CHUNK_SECONDS,)
    assert bool(np.all(np.isfinite(pcm))), "non-finite samples reach the model"
    peak = float(np.max(np.abs(pcm)))
    assert peak <= 1.0, f"pcm peaks at {peak!r} (> full scale) at {target_rate} Hz"


# --------------------------------------------------------------------------------------
# soundscape.envelope
# --------------------------------------------------------------------------------------


@fuzz(300)
@given(headers=header_lists(any_values), payload=st.none() | st.binary(max_size=32),
       key=st.none() | st.binary(max_size=16))
@example(headers=[("station_id", "\ud800")], payload=None, key=None)
def test_from_headers_raises_only_envelope_error(headers: Any, payload: bytes | None,
                                                 key: bytes | None) -> None:
    """A consumer catches EnvelopeError to dead-letter a message; anything else escaping
    from_headers would crash the consumer on one malformed message."""
    try:
        ChunkEnvelope.from_headers(headers, payload, key)
    except EnvelopeError as exc:
        assert exc.problems, "an EnvelopeError must say what was wrong"


@fuzz(300)
@given(case=valid_envelopes(), edits=st.lists(header_edits, min_size=1, max_size=4),
       payload_choice=st.sampled_from(["right", "none", "other"]),
       key_choice=st.sampled_from(["right", "none", "other"]))
def test_edited_valid_headers_parse_or_raise_envelope_error(
    case: tuple[ChunkEnvelope, bytes], edits: list[tuple[str, int, int, str, Any]],
    payload_choice: str, key_choice: str,
) -> None:
    """Near-valid headers get past the first checks and into the field validation; what
    is accepted there must be a valid envelope that survives its own round trip."""
    env, payload = case
    headers = edit_headers(env.to_headers(), edits)
    given_payload = {"right": payload, "none": None, "other": payload + b"!"}[payload_choice]
    given_key = {"right": env.key, "none": None, "other": env.key + b"x"}[key_choice]
    try:
        parsed = ChunkEnvelope.from_headers(headers, given_payload, given_key)
    except EnvelopeError as exc:
        assert exc.problems
        return
    parsed.validate(given_payload)
    assert ChunkEnvelope.from_headers(parsed.to_headers(), given_payload) == parsed


@fuzz(200)
@given(case=valid_envelopes())
def test_envelope_round_trip(case: tuple[ChunkEnvelope, bytes]) -> None:
    """What a station sends is exactly what the worker reads back."""
    env, payload = case
    headers = env.to_headers()
    assert all(isinstance(name, str) and isinstance(value, bytes) for name, value in headers)
    back = ChunkEnvelope.from_headers(headers, payload, env.key)
    assert back == env
    assert back.chunk_id == chunk_id_for(env.station_id, env.chunk_start)


# --------------------------------------------------------------------------------------
# soundscape.audio_codec
# --------------------------------------------------------------------------------------

#: Arbitrary bytes, some behind a real magic number so that libsndfile parses further.
garbage_payloads = st.tuples(
    st.sampled_from([b"", b"fLaC", b"fLaC\x00\x00\x00\x22", b"RIFF\x24\x00\x00\x00WAVEfmt ",
                     b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00"]),
    st.binary(max_size=512),
).map(b"".join)


@fuzz(200)
@given(payload=garbage_payloads, codec=st.sampled_from(["flac", "wav", "mp3"]))
def test_decode_of_garbage_raises_only_audio_decode_error(payload: bytes, codec: str) -> None:
    """Arbitrary bytes are an AudioDecodeError, or (rarely) audio of the declared shape."""
    try:
        audio = decode(payload, codec)  # type: ignore[arg-type]
    except AudioDecodeError:
        return
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 2


@fuzz(60)
@given(base=st.sampled_from(sorted(SHORT_BASES)),
       ops=st.lists(payload_mutations, min_size=1, max_size=4))
@example(base="flac-mono", ops=FLAC_HUGE_DECLARATION)
def test_decode_of_mutated_audio_raises_only_audio_decode_error(
    base: str, ops: list[tuple[str, int, int, bytes]],
) -> None:
    """A corrupted real chunk (bit flips, truncation, inserted bytes) is refused with
    AudioDecodeError; whatever decodes has all the frames its stream header declares."""
    codec, payload = SHORT_BASES[base]
    mutated = mutate(payload, ops)
    try:
        audio = decode(mutated, codec)
    except AudioDecodeError:
        return
    with sf.SoundFile(io.BytesIO(mutated)) as handle:
        assert audio.frames == handle.frames
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 2


def _check(refuse: bool, seen: list[AudioInfo]) -> Callable[[AudioInfo], None]:
    def check(info: AudioInfo) -> None:
        seen.append(info)
        if refuse:
            raise AudioDecodeError("refused by check")

    return check


@fuzz(150)
@given(payload=garbage_payloads, codec=st.sampled_from(["flac", "wav"]),
       max_frames=st.integers(0, 20_000), refuse=st.booleans())
def test_decode_mono_of_garbage_raises_only_audio_decode_error(
    payload: bytes, codec: Codec, max_frames: int, refuse: bool,
) -> None:
    """decode_mono is the worker's only decoder: garbage must stay an AudioDecodeError."""
    seen: list[AudioInfo] = []
    try:
        audio = decode_mono(payload, codec, _check(refuse, seen), max_frames)
    except AudioDecodeError:
        return
    assert not refuse
    assert audio.samples.ndim == 1 and audio.samples.size <= max_frames


@fuzz(60)
@given(base=st.sampled_from(sorted(SHORT_BASES)),
       ops=st.lists(payload_mutations, max_size=4),
       max_frames=st.one_of(st.integers(0, RATE), st.integers(0, 10 * RATE)),
       refuse=st.booleans())
@example(base="flac-mono", ops=FLAC_HUGE_DECLARATION, max_frames=RATE, refuse=False)
def test_decode_mono_of_mutated_audio_is_bounded(
    base: str, ops: list[tuple[str, int, int, bytes]], max_frames: int, refuse: bool,
) -> None:
    """Whatever a (corrupted) stream declares, decode_mono returns at most `max_frames`
    samples (memory must not follow the declaration), all of them when the stream is
    whole, and nothing at all once `check` refused the stream."""
    codec, payload = SHORT_BASES[base]
    seen: list[AudioInfo] = []
    try:
        audio = decode_mono(mutate(payload, ops), codec, _check(refuse, seen), max_frames)
    except AudioDecodeError:
        return
    assert not refuse, "decode_mono went on after check refused the stream"
    assert len(seen) == 1
    info = seen[0]
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.samples.size <= max_frames
    assert audio.samples.size == min(info.frames, max_frames)
    assert (audio.sample_rate, audio.channels) == (info.sample_rate, info.channels)


# --------------------------------------------------------------------------------------
# soundscape.processors.chunk_decoder
# --------------------------------------------------------------------------------------

time_windows = st.none() | st.builds(TimeWindow, nanos, st.integers(0, 10**18))


@fuzz(200)
@given(headers=header_lists(kafka_values),
       payload=st.none() | st.binary(max_size=256) | st.sampled_from(["flac-mono", "wav-mono"]),
       key=st.none() | st.binary(max_size=16) | st.just(b"st-1"),
       max_payload_bytes=st.sampled_from([0, 100, BIG_LIMIT]),
       times=time_windows)
def test_decode_chunk_never_raises_on_arbitrary_headers(
    headers: Any, payload: bytes | str | None, key: bytes | None, max_payload_bytes: int,
    times: TimeWindow | None,
) -> None:
    """A consumed message with any Kafka headers gets a precise reason, never a crash or
    an internal_error (which would mean a bug in the decoder)."""
    if isinstance(payload, str):
        payload = CHUNK_BASES[payload][2]
    result = decode_chunk(headers, payload, key, max_payload_bytes, target_rate=RATE,
                          times=times)
    assert isinstance(result, (Decoded, Rejected))
    if isinstance(result, Rejected):
        assert_clean_rejection(result)
    else:
        assert_model_pcm(result, RATE)


@fuzz(100)
@given(base=st.sampled_from(sorted(CHUNK_BASES)),
       ops=st.lists(payload_mutations, max_size=3),
       key_choice=st.sampled_from(["right", "none", "other"]))
def test_decode_chunk_refuses_payloads_that_do_not_match_their_hash(
    base: str, ops: list[tuple[str, int, int, bytes]], key_choice: str,
) -> None:
    """Valid headers with a corrupted payload: sha256_mismatch (or a key problem), never
    decoded audio; the untouched payload decodes."""
    codec, channels, payload = CHUNK_BASES[base]
    env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                    sample_rate=RATE, channels=channels, codec=codec,
                                    seq=0, captured_at=10**18)
    key = {"right": env.key, "none": None, "other": b"st-2"}[key_choice]
    mutated = mutate(payload, ops)
    result = decode_chunk(env.to_headers(), mutated, key, BIG_LIMIT, target_rate=RATE)
    if isinstance(result, Decoded):
        assert mutated == payload and key == env.key
        assert_model_pcm(result, RATE)
        return
    assert_clean_rejection(result)
    if key != env.key:
        assert result.reason == "bad_headers"
    else:
        assert mutated != payload
        assert result.reason == "sha256_mismatch"


@fuzz(60)
@given(base=st.sampled_from(sorted(CHUNK_BASES)),
       ops=st.lists(payload_mutations, max_size=3),
       header_codec=st.sampled_from(["same", "same", "same", "other"]),
       header_channels=st.sampled_from([0, 0, 0, 1, 2, 8]),  # 0: the payload's own
       header_rate=st.sampled_from([RATE, RATE, RATE, 16_000]),
       station=station_ids, chunk_start=nanos,
       target_rate=st.sampled_from([RATE, 16_000]),
       min_rate=st.sampled_from([0, 0, 0, RATE, 16_000]),
       max_payload_bytes=st.sampled_from([BIG_LIMIT, BIG_LIMIT, 1_000]),
       times=time_windows)
@example(base="flac-mono", ops=FLAC_HUGE_DECLARATION, header_codec="same", header_channels=0,
         header_rate=RATE, station="st-1", chunk_start=10**18, target_rate=RATE, min_rate=0,
         max_payload_bytes=BIG_LIMIT, times=None)
def test_decode_chunk_of_mutated_audio_with_matching_hash(
    base: str, ops: list[tuple[str, int, int, bytes]], header_codec: str, header_channels: int,
    header_rate: int, station: str, chunk_start: int, target_rate: int, min_rate: int,
    max_payload_bytes: int, times: TimeWindow | None,
) -> None:
    """The hash is recomputed for the corrupted payload (as a buggy station would), so the
    corruption really reaches libsndfile: a precise reason or model-ready PCM, never an
    internal_error; an unmutated chunk with matching headers always decodes."""
    codec, channels, payload = CHUNK_BASES[base]
    mutated = mutate(payload, ops)
    other: Codec = "wav" if codec == "flac" else "flac"
    env = ChunkEnvelope.for_payload(
        mutated, station_id=station, chunk_start=chunk_start, sample_rate=header_rate,
        channels=header_channels or channels, codec=codec if header_codec == "same" else other,
        seq=1, captured_at=chunk_start)
    result = decode_chunk(env.to_headers(), mutated, env.key, max_payload_bytes,
                          target_rate=target_rate, min_rate=min_rate, times=times)
    if isinstance(result, Decoded):
        assert_model_pcm(result, target_rate)
        assert result.envelope == env
        return
    assert_clean_rejection(result)
    matches = (not ops and header_codec == "same" and header_channels in (0, channels)
               and header_rate == RATE and min_rate <= RATE and times is None
               and max_payload_bytes >= len(payload))
    assert not matches, f"a valid chunk was refused: {result}"


@st.composite
def float_chunks(draw: st.DrawFn) -> dict[str, Any]:
    """A float WAV near 10 s long (+-200 ms) with arbitrary float32 values in places:
    a loud or quiet base signal, a few single samples and a few runs (long enough to
    cross the non-finite threshold) set to any float32, NaN and +-Inf included."""
    return {
        "delta_frames": draw(st.integers(-RATE // 5, RATE // 5)),
        "channels": draw(st.sampled_from([1, 1, 2])),
        "amplitude": draw(st.sampled_from([0.0, 0.1, 0.9, 1.0, 3.0, 1e30])),
        "square": draw(st.booleans()),
        "points": draw(st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 1),
                                          st.floats(width=32)), max_size=30)),
        "runs": draw(st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 2_000),
                                        st.floats(width=32)), max_size=3)),
    }


def build_float_chunk(spec: dict[str, Any]) -> np.ndarray:
    frames, channels = EXPECTED + spec["delta_frames"], spec["channels"]
    t = np.arange(frames) / RATE
    wave = np.sin(2 * np.pi * 440 * t)
    if spec["square"]:
        wave = np.sign(wave)
    samples = np.repeat((spec["amplitude"] * wave)[:, None], channels, axis=1).astype(np.float32)
    for position, channel, value in spec["points"]:
        samples[position % frames, channel % channels] = value
    for position, length, value in spec["runs"]:
        start = position % frames
        samples[start : start + length, :] = value
    return samples


@fuzz(60)
@given(spec=float_chunks(), target_rate=st.sampled_from([RATE, 16_000]))
def test_decode_chunk_of_float_wavs_with_any_values(spec: dict[str, Any],
                                                    target_rate: int) -> None:
    """Float WAV can carry NaN, Inf and 1e30: a well-formed one with matching headers is
    either model-ready PCM (finite, within full scale) or refused for its length or its
    non-finite samples; nothing else is a legitimate reason."""
    samples = build_float_chunk(spec)
    payload = float_wav(samples)
    env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                    sample_rate=RATE, channels=spec["channels"], codec="wav",
                                    seq=0, captured_at=10**18)
    result = decode_chunk(env.to_headers(), payload, env.key, BIG_LIMIT, target_rate=target_rate)
    if isinstance(result, Rejected):
        assert_clean_rejection(result)
        assert result.reason in ("wrong_length", "non_finite_audio"), result
    else:
        assert_model_pcm(result, target_rate)


@fuzz(100)
@given(tolerance_ms=st.floats(0.0, 200.0), fraction=st.floats(0.0, 0.05),
       delta_frames=st.integers(-2_000, 2_000), extra_bad=st.integers(-3, 3),
       amplitude=st.sampled_from([0.0, 0.5, 1.0, 4.0, 1e30]), seed=st.integers(0, 2**32 - 1))
def test_length_tolerance_and_non_finite_fraction(
    tolerance_ms: float, fraction: float, delta_frames: int, extra_bad: int,
    amplitude: float, seed: int,
) -> None:
    """The two repair limits are the contract with stations: a chunk within
    `length_tolerance_ms` of 10 s with at most `max_nonfinite_fraction` NaN/Inf samples is
    mended (padded/trimmed, zeroed, clipped; nothing else changed), a longer or shorter
    one is `wrong_length`, and one with more NaN/Inf is `non_finite_audio`."""
    tolerance_frames = tolerance_ms * RATE / 1000
    within = abs(delta_frames) <= tolerance_frames
    assume(within or abs(delta_frames) > tolerance_frames + 1)  # clear of the rounding
    frames = EXPECTED + delta_frames
    kept = min(frames, EXPECTED)
    limit = fraction * EXPECTED
    bad_count = max(0, min(kept, math.floor(limit) + extra_bad))

    rng = np.random.default_rng(seed)
    samples = (amplitude * rng.uniform(-1, 1, frames)).astype(np.float32)
    positions = rng.choice(kept, size=bad_count, replace=False)
    samples[positions] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), bad_count)
    payload = float_wav(samples)
    env = ChunkEnvelope.for_payload(payload, station_id="st-1", chunk_start=10**18,
                                    sample_rate=RATE, codec="wav", seq=0, captured_at=10**18)
    result = decode_chunk(env.to_headers(), payload, env.key, BIG_LIMIT, target_rate=RATE,
                          length_tolerance_ms=tolerance_ms, max_nonfinite_fraction=fraction)

    if not within:
        assert isinstance(result, Rejected) and result.reason == "wrong_length", result
        return
    if bad_count > limit:
        assert isinstance(result, Rejected) and result.reason == "non_finite_audio", result
        return
    assert isinstance(result, Decoded), result
    assert_model_pcm(result, RATE)
    head = samples[:kept]
    finite = np.isfinite(head)
    expected_pcm = np.clip(np.where(finite, head, np.float32(0)), -1, 1)
    np.testing.assert_array_equal(result.pcm[:kept], expected_pcm)
    assert not np.any(result.pcm[kept:])
    repairs = result.repairs
    assert repairs.padded_frames == max(0, -delta_frames)
    assert repairs.trimmed_frames == max(0, delta_frames)
    assert repairs.zeroed_samples == bad_count
    assert repairs.clipped_samples == int(np.count_nonzero(np.abs(head[finite]) > 1.0))


# --------------------------------------------------------------------------------------
# soundscape.processors.audio_stats
# --------------------------------------------------------------------------------------


@fuzz(200)
@given(pcm=arrays(np.float32, st.integers(1, 6_000), elements=st.floats(width=32)),
       sample_rate=st.integers(8_000, 384_000))
def test_audio_stats_accepts_any_mono_audio(pcm: np.ndarray, sample_rate: int) -> None:
    """Stats run on every decoded chunk (and on replays of odd ones): any values give a
    valid AudioStats; clipping is reported exactly when a sample reaches full scale, and
    audio below -60 dBFS everywhere (or NaN, which counts as silence) is all silence."""
    stats = audio_stats(pcm, sample_rate)
    assert isinstance(stats, AudioStats)
    clipped = bool(np.any(np.abs(pcm[~np.isnan(pcm)]) >= CLIP_LEVEL))
    assert (stats.clipping_ratio > 0) == clipped
    if bool(np.all(np.isnan(pcm) | (np.abs(pcm) < 1e-3))):
        assert stats.silence_ratio == 1.0


@fuzz(100)
@given(amplitude=st.floats(1e-30, 1e30), frames=st.integers(1, 40_000),
       sample_rate=st.integers(8_000, 384_000), freq=st.floats(0.0, 0.5))
def test_audio_stats_of_huge_and_tiny_tones(amplitude: float, frames: int, sample_rate: int,
                                            freq: float) -> None:
    """Levels from 1e-30 to 1e30 (a float WAV at 1e30 x full scale) stay valid stats."""
    pcm = (amplitude * np.sin(2 * np.pi * freq * np.arange(frames))).astype(np.float32)
    stats = audio_stats(pcm, sample_rate)
    assert 0.0 <= stats.spectral_centroid_hz <= sample_rate / 2
    assert (stats.clipping_ratio > 0) == bool(np.any(np.abs(pcm) >= CLIP_LEVEL))


# --------------------------------------------------------------------------------------
# soundscape.messages
# --------------------------------------------------------------------------------------


def _detection() -> Detection:
    """A valid detection (sinks' sample results) with the windowed-bundle fields too."""
    return sample_detection("st-1", 10**18, seed=1).model_copy(update={
        "top_k": [LabelScore(label="wren", probability=0.2),
                  LabelScore(label="tit", probability=0.7, common_name="Great tit",
                             window_start_s=3.0, window_end_s=6.0, in_range=True)],
        "windows": [WindowScores(start_s=3.0, end_s=6.0,
                                 top_k=[LabelScore(label="tit", probability=0.7)])],
        "embedding_f16": "AAA8",
    })


VALID_MESSAGES: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "detection": (Detection, json.loads(_detection().to_bytes())),
    "heartbeat": (Heartbeat, json.loads(Heartbeat(
        station_id="st-1", sent_at=5, software_version="0.1.0", disk_free_bytes=10,
        spool_depth=2, spool_bytes=800_000, oldest_spooled_chunk_start=4,
        cpu_temperature_c=51.5, clock_offset_ms=-3.0).to_bytes())),
    "drift": (DriftReport, json.loads(DriftReport(
        station_id="st-1", check="noise_floor", kind="input", window_start=0, window_end=10,
        value=21.0, threshold=6.0, alert=True, reference={"median_dbfs": -50.0, "n": 3},
        created_at=11).to_bytes())),
}
KINDS = (Detection, Heartbeat, DriftReport)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(any_text, st.sampled_from(
        ["station_id", "schema_version", "top_k", "label", "probability"])), children,
        max_size=4),
    max_leaves=20,
)


def json_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for name, child in value.items():
            yield from json_paths(child, (*prefix, name))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from json_paths(child, (*prefix, index))


def edited(doc: dict[str, Any], path: tuple[str | int, ...], op: str, value: Any) -> Any:
    """A copy of `doc` with the node at `path` replaced or deleted."""
    if not path:
        return value
    out = copy.deepcopy(doc)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if op == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


@st.composite
def edited_messages(
    draw: st.DrawFn, top_level: bool,
) -> tuple[str, tuple[str | int, ...], str, Any]:
    """(message name, path of the node, "replace" or "delete", new JSON value)."""
    names = [name for name, (_kind, doc) in sorted(VALID_MESSAGES.items())
             if top_level or any(len(p) > 1 for p in json_paths(doc))]
    name = draw(st.sampled_from(names))
    doc = VALID_MESSAGES[name][1]
    paths = [p for p in json_paths(doc) if p and (len(p) == 1) == top_level]
    return (name, draw(st.sampled_from(paths)),
            draw(st.sampled_from(["replace", "replace", "replace", "delete"])),
            draw(json_values))


def assert_parse_is_clean(kind: type[Any], raw: bytes | str) -> None:
    """Only MessageError; and what is accepted serializes to itself again."""
    try:
        message = parse(kind, raw)
    except MessageError as exc:
        assert str(exc).startswith(kind.__name__)
        return
    assert parse(kind, message.to_bytes()) == message


@fuzz(200)
@given(raw=st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from([b"{", b"[", b'{"station_id": ', b"\xef\xbb\xbf{"]),
              st.binary(max_size=100)).map(b"".join),
    any_text,
    st.integers(1, 3_000).map(lambda depth: b"[" * depth + b"]" * depth),
))
def test_parse_of_arbitrary_bytes_raises_only_message_error(raw: bytes | str) -> None:
    """The sink and the drift checks read these topics; a garbage value is a
    MessageError (dead-lettered), never a crash of the reader."""
    for kind in KINDS:
        assert_parse_is_clean(kind, raw)


@fuzz(200)
@given(value=json_values)
def test_parse_of_arbitrary_json_raises_only_message_error(value: Any) -> None:
    """Any JSON document: MessageError, or a message that round-trips."""
    raw = json.dumps(value).encode()
    for kind in KINDS:
        assert_parse_is_clean(kind, raw)


@fuzz(300)
@given(case=edited_messages(top_level=True))
def test_parse_of_a_valid_message_with_one_field_replaced(
    case: tuple[str, tuple[str | int, ...], str, Any],
) -> None:
    """One wrong field in an otherwise valid message: the error must still be a
    MessageError (naming the field); an accepted replacement must round-trip."""
    name, path, op, value = case
    kind, doc = VALID_MESSAGES[name]
    assert_parse_is_clean(kind, json.dumps(edited(doc, path, op, value)).encode())


@fuzz(300)
@given(case=edited_messages(top_level=False))
def test_parse_of_a_valid_message_with_one_nested_node_replaced(
    case: tuple[str, tuple[str | int, ...], str, Any],
) -> None:
    """Same, one level deeper: label scores, audio stats, timings, windows, references."""
    name, path, op, value = case
    kind, doc = VALID_MESSAGES[name]
    assert_parse_is_clean(kind, json.dumps(edited(doc, path, op, value)).encode())


def test_valid_messages_parse() -> None:
    """The fuzz bases above are valid: a mutation test on an invalid base proves nothing."""
    for kind, doc in VALID_MESSAGES.values():
        assert parse(kind, json.dumps(doc).encode()).to_bytes()
    for codec, channels, payload in CHUNK_BASES.values():
        decoded = decode_mono(payload, codec, lambda info: None, EXPECTED)
        assert decoded.channels == channels and decoded.samples.size == EXPECTED


@pytest.mark.parametrize("name", sorted(SHORT_BASES))
def test_short_bases_decode(name: str) -> None:
    """The codec fuzz bases decode as they are."""
    codec, payload = SHORT_BASES[name]
    assert decode(payload, codec).frames == RATE // 2
