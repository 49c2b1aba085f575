"""Scoring on the station: the demo int8 bundle turns a chunk's PCM into a signed edge
result; a scorer that is behind skips chunks (counted) without making capture wait; a
bad bundle is refused at once; `bench edge` prints its figures."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundscape.app.cli import cli
from soundscape.audio_codec import encode
from soundscape.chunk_signing import ChunkSigner, SignerKey, new_private_key_text, verify_result
from soundscape.envelope import ChunkEnvelope, chunk_id_for
from soundscape.errors import UserError
from soundscape.messages import Detection, Heartbeat, parse
from soundscape.models import DEMO_BUNDLE, DEMO_INT8_BUNDLE
from soundscape.producers.edge_scoring import EdgeModel, EdgeResult, EdgeScorer
from soundscape.settings import Settings
from soundscape.synthetic import soundscape_chunk

T0 = 1_714_541_400 * 10**9


def _envelope(station: str, pcm: np.ndarray, start: int = T0) -> ChunkEnvelope:
    return ChunkEnvelope.for_payload(encode(pcm, 32_000), station_id=station, chunk_start=start,
                                     sample_rate=32_000, codec="flac", seq=0,
                                     captured_at=start + 10**10, source="live")


def test_a_chunk_becomes_a_signed_edge_result() -> None:
    key = new_private_key_text()
    signer = ChunkSigner.from_text(key, "pi-1")
    model = EdgeModel(DEMO_INT8_BUNDLE, "pi-1", Settings(), signer=signer)
    chunk = soundscape_chunk(5, species=["cicada"], snr_db=(20.0, 20.0))
    result = model.score(_envelope("pi-1", chunk.audio), chunk.audio)
    assert isinstance(result, EdgeResult)
    detection = parse(Detection, result.value)
    assert detection == result.detection
    assert detection.chunk_id == chunk_id_for("pi-1", T0) and detection.station_id == "pi-1"
    assert detection.worker_id == "edge:pi-1" and detection.batch_size == 1
    assert detection.bundle_version.endswith("-int8")
    assert detection.top.label == "cicada"
    assert len(detection.top_k) == 5 and detection.timing.decode_ms == 0.0
    assert detection.timing.captured_at <= detection.timing.consumed_at <= detection.timing.scored_at
    keys = {"pi-1": SignerKey("pi-1", signer.key.public_key())}
    assert verify_result(result.headers, result.value, "pi-1", keys.get, require=True) is None
    unsigned = EdgeModel(DEMO_INT8_BUNDLE, "pi-1", Settings()).score(
        _envelope("pi-1", chunk.audio), chunk.audio)
    assert isinstance(unsigned, EdgeResult) and unsigned.headers == []


def test_a_chunk_the_front_end_refuses_gives_its_reason() -> None:
    model = EdgeModel(DEMO_INT8_BUNDLE, "pi-1", Settings())
    short = np.zeros(32_000, dtype=np.float32)
    assert isinstance(model.score(_envelope("pi-1", np.zeros(320_000, np.float32)), short), str)


def test_a_bad_or_windowless_bundle_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(DEMO_INT8_BUNDLE, broken)
    (broken / "wave_cnn.onnx").write_bytes(b"rot")
    with pytest.raises(UserError, match="station.edge_bundle is unusable.*wave_cnn.onnx"):
        EdgeModel(broken, "pi-1", Settings())
    with pytest.raises(UserError, match="station.edge_bundle is unusable"):
        EdgeModel(tmp_path / "nothing-here", "pi-1", Settings())
    assert EdgeModel(DEMO_BUNDLE, "pi-1", Settings()).threads == 1  # fp32 works too


class _SlowModel:
    """Stands in for EdgeModel: each score waits until released."""

    version = "slow-1"
    threads = 1

    def __init__(self) -> None:
        self.release = threading.Event()
        self.scored: list[int] = []

    def score(self, envelope: ChunkEnvelope, pcm: np.ndarray) -> str:
        self.release.wait(30)
        self.scored.append(envelope.chunk_start)
        return "refused by the stand-in"


def test_a_scorer_behind_skips_chunks_and_counts_them_without_waiting() -> None:
    settings = Settings().model_copy(update={"kafka": Settings().kafka.model_copy(
        update={"bootstrap_servers": "127.0.0.1:9"})})
    model = _SlowModel()
    cpu = {"capture": 0.0}
    scorer = EdgeScorer(settings, model, cpu).start()  # type: ignore[arg-type]
    pcm = np.zeros(320_000, dtype=np.float32)
    envelopes = [_envelope("pi-1", pcm, T0 + k * 10**10) for k in range(4)]
    try:
        assert scorer.offer(envelopes[0], pcm)
        deadline = time.monotonic() + 10
        while scorer._queue.qsize() and time.monotonic() < deadline:  # the first is taken
            time.sleep(0.01)
        began = time.monotonic()
        accepted = [scorer.offer(e, pcm) for e in envelopes[1:]]
        assert time.monotonic() - began < 0.5  # capture never waits
        assert accepted == [True, False, False]
        assert scorer.snapshot()["edge_skipped"] == 2
    finally:
        model.release.set()
        scorer.stop(flush_timeout_s=0.1)
    assert model.scored == [T0, T0 + 10**10]  # the one in hand and the one waiting
    assert scorer.snapshot() == {"edge_scored": 0, "edge_skipped": 2, "edge_refused": 2,
                                      "edge_delivered": 0, "edge_delivery_failures": 0,
                                      "edge_pending": 0, "edge_dropped": 0, "edge_resent": 0}
    assert "score" in cpu


def test_heartbeats_of_stations_that_score_nothing_keep_their_bytes() -> None:
    plain = Heartbeat(station_id="pi-1", sent_at=1, software_version="x", disk_free_bytes=1,
                      spool_depth=0, spool_bytes=0)
    assert b"edge_" not in plain.to_bytes()
    scoring = plain.model_copy(update={"edge_scored": 4, "edge_skipped": 1})
    assert parse(Heartbeat, scoring.to_bytes()).edge_skipped == 1


def test_bench_edge_prints_cpu_per_chunk_and_the_verdict() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["bench", "edge", "--help"]).exit_code == 0
    result = runner.invoke(cli, ["bench", "edge", "--chunks", "2", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["threads"] == 1 and figures["chunks"] == 2
    assert figures["precision"] == "int8" and figures["goal_cpu_ms"] == 200.0
    for name in ("cpu_ms_per_chunk", "thread_cpu_ms_per_chunk", "wall_ms_per_chunk",
                 "decode_flac_cpu_ms"):
        assert 0 < figures[name]["p50"] <= figures[name]["p95"] <= figures[name]["max"], name
    assert figures["under_goal"] == (figures["cpu_ms_per_chunk"]["p95"] < 200.0)
    text = runner.invoke(cli, ["bench", "edge", "--chunks", "1"])
    assert text.exit_code == 0, text.output
    assert "CPU per 10 s chunk:  p50" in text.output and "goal: p95 CPU" in text.output
