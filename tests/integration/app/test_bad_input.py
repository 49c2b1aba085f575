"""No input stops a worker or the sink: 50+ kinds of malformed chunks and 20 kinds of
malformed results, interleaved with good ones, through the real broker to a worker and a
sink running as `soundscape worker` and `soundscape sink` processes.

Checked: both processes stay up the whole time (the sink is also killed with SIGKILL and
restarted mid-run, as a crash would), every bad kind is in its dead-letter topic exactly
once with the expected reason (or stored, for the kinds that are repaired and
documented as tolerated), and every good chunk and result is stored exactly once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest
import soundfile as sf
from confluent_kafka import Producer

from soundscape.audio_codec import encode
from soundscape.database import database_url
from soundscape.envelope import ChunkEnvelope, chunk_id_for
from soundscape.kafka_topics import ensure_topics
from soundscape.kafka_clients import (
    ENVELOPE_OVERHEAD_BYTES,
    bootstrap_servers,
    producer_config,
)
from soundscape.settings import Settings, settings_env
from soundscape.app.bundle_registration import register
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import (
    detection,
    drift_report,
    heartbeat,
    register_sample_bundle,
)
from soundscape.synthetic import field_chunk
from topic_reader import read_messages

NS = 10**9
START_NS = 1_760_000_000 * NS  # 2025-10-09
FAR_FUTURE_NS = 7_258_118_400 * NS  # 2200-01-01
MAX_INT64 = 2**63 - 1
LIMIT = 1024 * 1024  # kafka.max_message_bytes here: the oversize kinds stay small

Headers = list[tuple[str, bytes]]


def _wav(audio: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> bytes:
    """Float WAV at 16 kHz by default: 10 s of it (640 KB) fits under LIMIT."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _bomb() -> bytes:
    """~200 KB of FLAC declaring 60 s x 8 channels x 384 kHz of silence."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 384_000, 8, format="FLAC", subtype="PCM_16") as handle:
        block = np.zeros((384_000, 8), np.int16)
        for _ in range(60):
            handle.write(block)
    return buffer.getvalue()


class Chunks:
    """Builds chunk messages of one station each: (key, payload, headers)."""

    def __init__(self) -> None:
        self.count = 0

    def next_station(self, tag: str) -> str:
        self.count += 1
        return f"bad-{self.count:03d}-{tag}"[:64]

    def good(self, tag: str, payload: bytes | None = None, *, rate: int = 32000,
             channels: int = 1, codec: str = "flac", start: int = START_NS,
             station: str | None = None) -> tuple[bytes, bytes, Headers]:
        station = station or self.next_station(tag)
        if payload is None:
            payload = encode(field_chunk(self.count) * 0.5, 32000)
        env = ChunkEnvelope.for_payload(payload, station_id=station, chunk_start=start,
                                        sample_rate=rate, channels=channels,
                                        codec=codec, seq=0, captured_at=START_NS)  # type: ignore[arg-type]
        return env.key, payload, env.to_headers()

    def edited(self, tag: str, edit: Callable[[dict[str, bytes]], None],
               payload: bytes | None = None, key: bytes | None = b"") -> tuple[bytes | None, bytes, Headers]:
        """A good chunk whose headers are then edited (a dict: order kept, one per name)."""
        own_key, payload, headers = self.good(tag, payload)
        values = dict(headers)
        edit(values)
        return (own_key if key == b"" else key), payload, list(values.items())


def bad_chunks(chunks: Chunks) -> dict[str, tuple[tuple[bytes | None, bytes | None, Headers], str]]:
    """kind -> ((key, value, headers), expected dlq_reason)."""
    flac = encode(field_chunk(1) * 0.5, 32000)
    sine = (0.3 * np.sin(np.linspace(0, 2000 * np.pi, 320_000))).astype(np.float32)

    def put(name: str, value: bytes) -> Callable[[dict[str, bytes]], None]:
        return lambda h: h.__setitem__(name, value)

    def drop(name: str) -> Callable[[dict[str, bytes]], None]:
        return lambda h: h.pop(name)

    def start_at(ns: int) -> Callable[[dict[str, bytes]], None]:
        def edit(h: dict[str, bytes]) -> None:
            h["chunk_start"] = str(ns).encode()
            h.pop("chunk_id")
        return edit

    def hashed(payload: bytes, **envelope: object) -> tuple[bytes, bytes, Headers]:
        return chunks.good("x", payload, **envelope)  # type: ignore[arg-type]

    sine16 = sine[::2].copy()
    nan_all = np.full(160_000, np.nan, np.float32)
    inf_5 = sine16.copy()
    inf_5[: 8_000] = np.inf
    kinds: dict[str, tuple[tuple[bytes | None, bytes | None, Headers], str]] = {
        "no headers": ((b"st", flac, []), "bad_headers"),
        "no station_id": (chunks.edited("a", drop("station_id")), "bad_headers"),
        "no chunk_start": (chunks.edited("a", drop("chunk_start")), "bad_headers"),
        "no sha256": (chunks.edited("a", drop("sha256")), "bad_headers"),
        "chunk_start text": (chunks.edited("a", put("chunk_start", b"abc")), "bad_headers"),
        "chunk_start negative": (chunks.edited("a", start_at(-10 * NS)), "bad_headers"),
        "chunk_start 20 digits": (chunks.edited("a", put("chunk_start", b"9" * 20)), "bad_headers"),
        "sample_rate 0": (chunks.edited("a", put("sample_rate", b"0")), "bad_headers"),
        "sample_rate 1 MHz": (chunks.edited("a", put("sample_rate", b"1000000")), "bad_headers"),
        "channels 0": (chunks.edited("a", put("channels", b"0")), "bad_headers"),
        "channels 9": (chunks.edited("a", put("channels", b"9")), "bad_headers"),
        "codec mp3": (chunks.edited("a", put("codec", b"mp3")), "bad_headers"),
        "codec 10 KB": (chunks.edited("a", put("codec", b"z" * 10_000)), "bad_headers"),
        "station upper case": (chunks.edited("a", put("station_id", b"BAD"), key=b"BAD"),
                               "bad_headers"),
        "station 65 chars": (chunks.edited("a", put("station_id", b"s" * 65), key=b"s" * 65),
                             "bad_headers"),
        "seq negative": (chunks.edited("a", put("seq", b"-1")), "bad_headers"),
        "sha256 not hex": (chunks.edited("a", put("sha256", b"z" * 64)), "bad_headers"),
        "captured_at negative": (chunks.edited("a", put("captured_at", b"-5")), "bad_headers"),
        "source forged": (chunks.edited("a", put("source", b"forged")), "bad_headers"),
        "gap_ns negative": (chunks.edited("a", put("gap_ns", b"-1")), "bad_headers"),
        "station not UTF-8": (chunks.edited("a", put("station_id", b"\xff\xfe")), "bad_headers"),
        "chunk_id forged": (chunks.edited("a", put("chunk_id", str(chunk_id_for("x", 1)).encode())),
                            "bad_headers"),
        "key is another station": (chunks.edited("a", lambda h: None, key=b"other-station"),
                                   "bad_headers"),
        "no key": (chunks.edited("a", lambda h: None, key=None), "bad_headers"),
        "schema_version 9": (chunks.edited("a", put("schema_version", b"9")), "unsupported_schema"),
        "start 1970": (chunks.edited("a", start_at(0)), "implausible_time"),
        "start 1999": (chunks.edited("a", start_at(946_684_790 * NS)), "implausible_time"),
        "start 2200": (chunks.edited("a", start_at(FAR_FUTURE_NS)), "implausible_time"),
        "start max int64": (chunks.edited("a", start_at(MAX_INT64)), "implausible_time"),
        "sha256 of other payload": (chunks.edited("a", put("sha256", hashlib.sha256(b"o").hexdigest().encode())),
                                    "sha256_mismatch"),
        "payload just under the topic limit": (
            hashed(os.urandom(LIMIT + ENVELOPE_OVERHEAD_BYTES - 2048)), "oversize"),
        "payload one byte over": (hashed(os.urandom(LIMIT + 1)), "oversize"),
        "garbage": (hashed(b"\x00garbage" * 1000), "undecodable_audio"),
        "empty payload": (hashed(b""), "undecodable_audio"),
        "truncated FLAC": (hashed(flac[: len(flac) // 3]), "undecodable_audio"),
        "FLAC header only": (hashed(flac[:120]), "undecodable_audio"),
        "fLaC then noise": (hashed(b"fLaC" + os.urandom(5000)), "undecodable_audio"),
        # libsndfile reads a cut WAV as the frames present: 4.7 s, so the length is wrong
        "truncated WAV": (hashed(_wav(sine16)[: 300_000], rate=16000, codec="wav"),
                          "wrong_length"),
        "WAV labelled FLAC": (hashed(_wav(sine16, subtype="PCM_16"), rate=16000), "format_mismatch"),
        "FLAC labelled WAV": (hashed(flac, codec="wav"), "format_mismatch"),
        "16 kHz labelled 32 kHz": (hashed(encode(sine[:160_000], 16000)), "format_mismatch"),
        "stereo labelled mono": (hashed(encode(np.stack([sine, sine], 1), 32000)), "format_mismatch"),
        "mono labelled 48 kHz stereo": (hashed(flac, rate=48_000, channels=2), "format_mismatch"),
        "5 s": (hashed(encode(sine[:160_000], 32000)), "wrong_length"),
        "20 s": (hashed(encode(np.concatenate([sine, sine]), 32000)), "wrong_length"),
        "10.1 s": (hashed(encode(np.concatenate([sine, sine[:3200]]), 32000)), "wrong_length"),
        "decompression bomb": (hashed(_bomb(), rate=384_000, channels=8), "wrong_length"),
        "WAV of no frames": (hashed(_wav(np.zeros(0, np.float32)), rate=16000, codec="wav"),
                             "wrong_length"),
        "all NaN": (hashed(_wav(nan_all), rate=16000, codec="wav"), "non_finite_audio"),
        "5 % Inf": (hashed(_wav(inf_5), rate=16000, codec="wav"), "non_finite_audio"),
        "garbage with a forged dlq_reason": (
            (lambda k, v, h: (k, v, h + [("dlq_reason", b"forged"), ("dlq_worker", b"x")]))(
                *hashed(b"\x01junk" * 500)), "undecodable_audio"),
    }
    return kinds


def tolerated_chunks(chunks: Chunks) -> dict[str, tuple[bytes, bytes, Headers]]:
    """Kinds that are repaired and stored (docs/bad-input.md)."""
    sine = (0.3 * np.sin(np.linspace(0, 2000 * np.pi, 320_000))).astype(np.float32)
    sine16 = sine[::2].copy()
    sine48 = (0.3 * np.sin(np.linspace(0, 2000 * np.pi, 480_000))).astype(np.float32)
    inf_small = sine16.copy()
    inf_small[::1000] = np.inf  # 0.1 %
    return {
        "10 ms short": chunks.good("t", encode(sine[:319_680], 32000)),
        "30 ms long": chunks.good("t", encode(np.concatenate([sine, sine[:960]]), 32000)),
        "0.1 % Inf": chunks.good("t", _wav(inf_small), rate=16000, codec="wav"),
        "float PCM x 1000": chunks.good("t", _wav(sine16 * 1000), rate=16000, codec="wav"),
        "8 kHz": chunks.good("t", encode(sine[:80_000], 8000), rate=8000),
        # one live channel of eight keeps the FLAC under LIMIT; the decoder still mixes 8
        "48 kHz x 8 ch": chunks.good("t", encode(np.pad(sine48[:, None], ((0, 0), (0, 7))), 48_000),
                                     rate=48_000, channels=8),
        "unknown extra header": (lambda k, v, h: (k, v, h + [("trace", b"abc")]))(*chunks.good("t")),
        "good chunk with a forged dlq_reason": (lambda k, v, h: (k, v, h + [("dlq_reason", b"x")]))(
            *chunks.good("t")),
    }


def bad_results() -> dict[str, tuple[str, bytes, str]]:
    """kind -> (topic kind, value, text the dlq_reason must contain)."""
    d = json.loads(detection("res-bad", START_NS).to_bytes())
    hb = json.loads(heartbeat("res-bad", START_NS).to_bytes())
    dr = json.loads(drift_report("res-bad", START_NS).to_bytes())

    def det(**changes: object) -> bytes:
        value = json.loads(json.dumps(d))
        for path, new in changes.items():
            *parents, leaf = path.split("__")
            target = value
            for parent in parents:
                target = target[parent]
            target[leaf] = new
        if "chunk_start" in changes:
            value["chunk_id"] = str(chunk_id_for(value["station_id"], value["chunk_start"]))
        return json.dumps(value, separators=(",", ":")).encode()

    def other(base: dict, **changes: object) -> bytes:
        return json.dumps(base | changes, separators=(",", ":")).encode()

    return {
        "not JSON": ("detections", b"\x00\x01 not json", "Detection"),
        "empty value": ("detections", b"", "empty message value"),
        "JSON array": ("detections", b"[1, 2]", "Detection"),
        "chunk_start max int64": ("detections", det(chunk_start=MAX_INT64), "implausible_time"),
        "chunk_start 1970": ("detections", det(chunk_start=0), "implausible_time"),
        "chunk_start 2200": ("detections", det(chunk_start=FAR_FUTURE_NS), "implausible_time"),
        "batch_size 2^40": ("detections", det(batch_size=2**40), "batch_size"),
        "decode_ms 1e300": ("detections", det(timing__decode_ms=1e300), "decode_ms"),
        "NaN": ("detections", det().replace(b'"dc_offset":', b'"dc_offset":NaN,"x":'), "Detection"),
        "NUL in worker_id": ("detections", det(worker_id="w\u0000x"), "database refused"),
        "chunk_id not derived": ("detections", det(chunk_id=str(chunk_id_for("x", 1))), "chunk_id"),
        "unknown field": ("detections", det(surprise=1), "surprise"),
        "schema_version 2": ("detections", det(schema_version=2), "schema_version"),
        "probability 1.5": ("detections", det(top_k=[{"label": "a", "probability": 1.5}]), "probability"),
        "200 labels in top_k": ("detections", det(top_k=[{"label": f"l{i}", "probability": 0.1}
                                                          for i in range(200)]), "top_k"),
        "station path": ("detections", det(station_id="../etc"), "station_id"),
        "unregistered bundle": ("detections", det(bundle_version="forged-bundle"),
                                "unregistered_bundle"),
        "heartbeat spool_depth -1": ("heartbeats", other(hb, spool_depth=-1), "spool_depth"),
        "heartbeat in 2200": ("heartbeats", other(hb, sent_at=FAR_FUTURE_NS), "implausible_time"),
        "heartbeat past 2262": ("heartbeats", other(hb, sent_at=10_413_792_000 * NS),
                                "less than or equal to 9223372036854775807"),
        "heartbeat temperature 1e300": ("heartbeats", other(hb, cpu_temperature_c=1e300), "cpu_temperature_c"),
        "drift value 1e400": ("drift", other(dr).replace(b'"value":1.5', b'"value":1e400'), "value"),
        "drift window 1970": ("drift", other(dr, window_start=0), "implausible_time"),
    }


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "soundscape", *args], env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _rows(settings: Settings, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(database_url(settings)) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.input_only
def test_no_input_stops_the_worker_or_the_sink(kafka_settings: Settings, db_settings: Settings,
                                               tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(update={
        "postgres": db_settings.postgres,
        "kafka": kafka_settings.kafka.model_copy(update={"max_message_bytes": LIMIT}),
        "worker": kafka_settings.worker.model_copy(update={
            "group_id": f"fuzz-{kafka_settings.topics.audio}", "batch_size": 16,
            "bundle": _bundle(tmp_path)}),
        "sink": kafka_settings.sink.model_copy(update={
            "group_id": f"fuzz-sink-{kafka_settings.topics.audio}", "batch_size": 40,
            "batch_timeout_ms": 200}),
    })
    ensure_topics(settings)  # the smaller limit, and room for DLQ headers on top of it
    migrate.upgrade(settings)
    register(settings, settings.worker.bundle)  # as `models register` would
    register_sample_bundle(settings)  # the good results' version

    chunks = Chunks()
    bad = bad_chunks(chunks)
    tolerated = tolerated_chunks(chunks)
    goods = [chunks.good("g", station="good-station", start=START_NS + i * 10 * NS)
             for i in range(24)]
    assert len(bad) >= 50

    # Interleave: a good chunk after every two bad or tolerated ones; one good twice.
    offsets: dict[str, int] = {}
    producer = Producer(producer_config(settings, **{"message.max.bytes": 4 * LIMIT}))
    topic = settings.topics.audio
    queue: list[tuple[str, tuple[bytes | None, bytes | None, Headers]]] = []
    others = [(f"bad:{k}", m) for k, (m, _) in bad.items()] + [(f"ok:{k}", m) for k, m in tolerated.items()]
    for i, item in enumerate(others):
        queue.append(item)
        if i % 2 == 1 and goods:
            queue.append((f"good:{len(queue)}", goods.pop()))
    queue += [(f"good:{len(queue) + i}", g) for i, g in enumerate(goods)]
    queue.append(("good:again", queue[-1][1]))
    good_ids = {str(chunk_id_for(dict(m[2])["station_id"].decode(), int(dict(m[2])["chunk_start"])))
                for name, m in queue if not name.startswith("bad:")}

    def sent(name: str) -> Callable:
        def delivered(err: object, msg: object) -> None:
            assert err is None, (name, err)
            offsets[name] = (msg.topic(), msg.partition(), msg.offset())  # type: ignore[attr-defined]
        return delivered

    for name, (key, value, headers) in queue:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=sent(name))
    results = bad_results()
    result_topics = {"detections": settings.topics.detections,
                     "heartbeats": settings.topics.heartbeats, "drift": settings.topics.drift}
    for name, (kind, value, _) in results.items():
        producer.produce(result_topics[kind], key=b"res-bad", value=value,
                         headers=[("dlq_reason", b"forged")] if name == "not JSON" else None,
                         on_delivery=sent(f"result:{name}"))
    good_results = [detection("res-good", START_NS + i * 10 * NS) for i in range(10)]
    for i, message in enumerate(good_results):
        producer.produce(settings.topics.detections, key=b"res-good", value=message.to_bytes())
    assert producer.flush(60) == 0

    env = os.environ | settings_env(settings) | {
        "SOUNDSCAPE_LOG_FORMAT": "json",
        "SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers(settings)}
    worker = _start(["worker", "--worker-id", "fuzz-worker"], env, tmp_path / "worker.log")
    sink = _start(["sink"], env, tmp_path / "sink.log")
    restarts = 0
    try:
        expected_chunks = len(good_ids) + len(good_results)
        deadline = time.monotonic() + 240
        stored = 0
        while time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert sink.poll() is None, (tmp_path / "sink.log").read_text()[-3000:]
            stored = _rows(settings, "select count(*) from chunks")[0][0]
            if restarts == 0 and stored > 0:
                sink.send_signal(signal.SIGKILL)  # as a crash would, mid-run
                sink.wait(30)
                sink = _start(["sink"], env, tmp_path / "sink.log")
                restarts += 1
            if stored >= expected_chunks:
                break
            time.sleep(0.5)
        assert stored == expected_chunks, (tmp_path / "worker.log").read_text()[-3000:]
        time.sleep(3)  # room for a duplicate or a late dead letter to show
        sink.terminate()
        assert sink.wait(60) == 0
        sink = _start(["sink"], env, tmp_path / "sink.log")  # and once more, gracefully
        time.sleep(8)
        assert worker.poll() is None and sink.poll() is None
    finally:
        for proc in (worker, sink):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
    assert worker.returncode == 0 and sink.returncode == 0

    # Chunks: each good and tolerated one stored once; no bad one stored.
    rows = _rows(settings, "select chunk_id::text, station_id from chunks")
    ids = Counter(row[0] for row in rows)
    assert set(ids) == good_ids | {str(m.chunk_id) for m in good_results}
    assert max(ids.values()) == 1

    # Audio DLQ: each bad kind once, with its reason; the producer's own dlq_* dropped.
    by_source: dict[tuple[int, int], list] = {}
    for message in read_messages(settings, settings.topics.audio_dlq, len(bad), settle_s=4.0):
        headers = message.headers()
        part, off = dict(headers)["dlq_source"].decode().rsplit("/", 2)[1:]
        by_source.setdefault((int(part), int(off)), []).append(headers)
    reasons: Counter[str] = Counter()
    wrong: list[tuple[str, str, str, bytes]] = []
    for kind, (_, reason) in bad.items():
        copies = by_source.get(offsets[f"bad:{kind}"][1:], [])
        assert len(copies) == 1, (kind, len(copies))
        names = [name for name, _ in copies[0] if name.startswith("dlq_")]
        assert names.count("dlq_reason") == 1 and names.count("dlq_worker") == 1, (kind, names)
        got = dict(copies[0])["dlq_reason"].decode()
        if got != reason:
            wrong.append((kind, reason, got, dict(copies[0])["dlq_detail"]))
        reasons[got] += 1
    assert not wrong, "kind, expected, got, detail:\n" + "\n".join(map(repr, wrong))
    assert len(by_source) == len(bad), "a tolerated or good chunk was dead-lettered"

    # Results DLQ: each bad result once, with a reason that names what was wrong.
    copies_by_offset: Counter[tuple[str, int, int]] = Counter()
    reason_at: dict[tuple[str, int, int], str] = {}
    for message in read_messages(settings, settings.topics.results_dlq, len(results), settle_s=4.0):
        h = dict(message.headers())
        at = (h["dlq_source_topic"].decode(), int(h["dlq_source_partition"]),
              int(h["dlq_source_offset"]))
        copies_by_offset[at] += 1
        reason_at[at] = h["dlq_reason"].decode()
        names = [name for name, _ in message.headers() if name == "dlq_reason"]
        assert len(names) == 1
    misread = []
    for kind, (_, _, text) in results.items():
        at = offsets[f"result:{kind}"]
        assert copies_by_offset[at] == 1, (kind, copies_by_offset[at])
        if text not in reason_at[at]:
            misread.append((kind, text, reason_at[at]))
    assert not misread, "kind, expected text, reason:\n" + "\n".join(map(repr, misread))
    assert sum(copies_by_offset.values()) == len(results)

    print(f"\nbad input: {len(bad)} malformed chunk kinds dead-lettered by reason "
          f"{dict(sorted(reasons.items()))}; {len(tolerated)} tolerated and stored; "
          f"{len(good_ids)} good and tolerated chunks stored once each (one good chunk sent "
          f"twice); {len(results)} malformed result kinds "
          f"dead-lettered once each across {restarts} SIGKILL and 1 graceful sink restart; "
          "worker and sink exits: 0")


def _bundle(tmp_path: Path) -> Path:
    """The committed demo bundle, else a small one with random weights (these tests
    check what happens to bad input, not species)."""
    try:
        from soundscape.models import DEMO_BUNDLE

        if (DEMO_BUNDLE / "bundle.json").is_file():
            return Path(DEMO_BUNDLE)
    except ImportError:
        pass
    run = [sys.executable, "-m", "soundscape"]
    subprocess.run([*run, "frontend", "build", "--out", str(tmp_path / "frontend.onnx")],
                   check=True, capture_output=True)
    subprocess.run([*run, "models", "export", str(tmp_path / "small"), "--profile", "small",
                    "--classes", "6", "--random", "--frontend", str(tmp_path / "frontend.onnx")],
                   check=True, capture_output=True)
    return tmp_path / "small"
