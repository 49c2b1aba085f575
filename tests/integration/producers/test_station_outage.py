"""A broker outage while a station streams: every chunk arrives, in order, none twice.

The broker is the test's own, stopped and started again while the station records
four minutes of synthetic audio at 8 x real time; the station spools through the outage
and drains in order when the broker is back. The replay, too, waits for a broker that
is down rather than failing half-way.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from soundscape.kafka_clients import bootstrap_servers
from soundscape.messages import Heartbeat, parse
from soundscape.producers.archive import Naming
from soundscape.producers.replay import Replay
from soundscape.settings import Settings

from conftest import cli_env, read_topic, soundscape_cmd

T0 = 1_714_541_400 * 10**9  # 2024-05-01 05:30:00 UTC
CHUNK_NS = 10 * 10**9
CHUNKS = 24  # 4 minutes of audio


def test_station_streams_through_a_broker_outage(own_broker: tuple[Settings, object],
                                                  tmp_path: Path) -> None:
    settings, broker = own_broker
    env = cli_env(settings, tmp_path / "station",
                  SOUNDSCAPE_STATION__HEARTBEAT_INTERVAL_S="1",
                  SOUNDSCAPE_STATION__RETRY_BACKOFF_MAX_S="1")
    station = subprocess.Popen(
        soundscape_cmd("station", "--station", "field-01", "--source", "synthetic",
                       "--speed", "8", "--start", "2024-05-01T05:30:00Z",
                       "--chunks", str(CHUNKS), "--drain-timeout", "120", "--json"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(6)  # about 5 chunks sent
        broker.stop()  # type: ignore[attr-defined]
        time.sleep(8)  # about 6 more chunks recorded into the spool meanwhile
        spooled_during_outage = len(list((tmp_path / "station" / "station" / "field-01" / "spool")
                                         .glob("*.chunk")))
        broker.start()  # type: ignore[attr-defined]
        out, err = station.communicate(timeout=150)
    finally:
        if station.poll() is None:
            station.kill()
    assert station.returncode == 0, err[-3000:]
    report = json.loads(out)
    assert spooled_during_outage >= 3, "the outage did not hit the stream"
    assert report["chunks_captured"] == CHUNKS and report["chunks_acked"] == CHUNKS
    assert report["spool_depth"] == 0 and report["evicted_chunks"] == 0

    records = read_topic(settings, settings.topics.audio, expected=CHUNKS)
    assert len(records) == CHUNKS, f"{len(records)} messages for {CHUNKS} chunks"
    envelopes = [r.envelope() for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    assert len({r.partition for r in records}) == 1  # one station, one partition: one order
    assert [e.seq for e in envelopes] == list(range(CHUNKS))  # in order, none twice
    assert [e.chunk_start for e in envelopes] == [T0 + k * CHUNK_NS for k in range(CHUNKS)]
    assert all(e.gap_ns == 0 and e.source == "live" and e.station_id == "field-01"
               for e in envelopes)
    assert len({e.chunk_id for e in envelopes}) == CHUNKS

    beats = [parse(Heartbeat, r.value) for r in read_topic(settings, settings.topics.heartbeats)]
    assert beats and all(b.station_id == "field-01" for b in beats)
    assert max(b.spool_depth for b in beats) >= 2, "heartbeats never saw the spool fill"
    assert beats[-1].spool_depth == 0 or any(b.spool_depth == 0 for b in beats[-3:])
    assert all(b.disk_free_bytes > 0 and b.software_version for b in beats)


def test_replay_waits_for_a_broker_that_is_down(own_broker: tuple[Settings, object],
                                                tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    settings, broker = own_broker
    folder = tmp_path / "archive" / "pond-2"
    folder.mkdir(parents=True)
    sf.write(folder / "20240501_053000.flac",
             np.random.default_rng(3).uniform(-0.1, 0.1, 32_000 * 60).astype(np.float32), 32_000)
    run_settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(
            update={"bootstrap_servers": bootstrap_servers(settings)}),
        "replay": settings.replay.model_copy(update={"checkpoint_dir": tmp_path / "checkpoints"}),
    })
    broker.stop()  # type: ignore[attr-defined]
    replay = Replay(run_settings, [str(tmp_path / "archive")], Naming(), progress=False)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault("summary", replay.run()))
    worker.start()
    time.sleep(4)
    assert worker.is_alive(), "the replay gave up while the broker was down"
    broker.start()  # type: ignore[attr-defined]
    worker.join(timeout=120)
    assert not worker.is_alive()
    summary = result["summary"]
    assert summary.chunks == 6 and summary.failed_deliveries == 0  # type: ignore[attr-defined]
    records = read_topic(settings, settings.topics.audio, expected=6)
    starts = sorted(r.envelope().chunk_start for r in records)
    assert starts == [T0 + k * CHUNK_NS for k in range(6)]
