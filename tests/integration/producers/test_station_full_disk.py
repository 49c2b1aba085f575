"""A station whose disk fills up (issue 21, item 6): a real, small tmpfs holds the spool,
and another file takes all but a sliver of it. Capture goes on; each chunk the disk has
no room for is lost as a whole and recorded as a gap (counted in heartbeats and metrics,
carried into the next stored chunk's `gap_ns`), never stored half-written; once room
returns, chunks flow again and the spool reads back clean."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundscape.envelope import ChunkEnvelope
from soundscape.producers.chunker import CHUNK_NS
from soundscape.producers.sources import SyntheticSource
from soundscape.producers.spool import DiskSpool
from soundscape.producers.station import Station
from soundscape.settings import Settings
from topic_reader import read_messages

pytestmark = [pytest.mark.integration, pytest.mark.local_only]

DISK_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root, as the project's machines and CI run)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _wait(condition, what: str, thread: threading.Thread, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert thread.is_alive(), f"the station stopped while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_full_disk_loses_whole_chunks_as_gaps_and_capture_goes_on(
        kafka_settings: Settings, small_disk: Path) -> None:
    settings = kafka_settings.model_copy(update={"station": kafka_settings.station.model_copy(
        update={"data_dir": small_disk, "heartbeat_interval_s": 1.0})})
    start_ns = (time.time_ns() // 10**9 - 3600) * 10**9
    station = Station(settings, "full-disk-1", SyntheticSource(start_ns=start_ns, speed=0))
    filler = small_disk / "someone-elses.bin"
    free = DISK_BYTES - sum(f.stat().st_size for f in small_disk.rglob("*") if f.is_file())
    filler.write_bytes(b"\0" * (free - 64 * 1024))  # 64 KiB left: less than one chunk

    thread = threading.Thread(target=station.run, name="station")
    thread.start()
    try:
        _wait(lambda: station.disk_full_chunks >= 3, "three chunks lost to the full disk", thread)
        assert station.captured == 0
        spool_dir = small_disk / "spool"  # station.data_dir is the station's own folder
        # Nothing stored half-written. The station keeps retrying, so the `.tmp` of the
        # attempt under way may exist at this instant; it is unlinked when the write fails
        # (the last check below, after the station stops, shows none is left behind).
        assert spool_dir.is_dir()
        assert not [p for p in spool_dir.glob("*") if p.suffix != ".tmp"]
        filler.unlink()  # room again
        _wait(lambda: station.captured >= 3, "chunks spooled again", thread)
        snapshot = station.snapshot()
        heartbeat = station.heartbeat()
    finally:
        station.request_stop()
        thread.join(60)
    assert not thread.is_alive()

    lost = station.disk_full_chunks
    assert snapshot["disk_full_chunks"] == lost and snapshot["gaps"] >= lost
    assert heartbeat.gaps >= lost and heartbeat.gap_ns_total >= lost * CHUNK_NS
    sent = [ChunkEnvelope.from_headers(m.headers(), m.value(), m.key())
            for m in read_messages(settings, settings.topics.audio, expected=station.captured)]
    assert len(sent) == station.captured
    first = min(sent, key=lambda e: e.chunk_start)
    # The first chunk stored after the lost ones starts where they would have ended, and
    # says so: its gap is their length exactly (the synthetic source loses no samples).
    assert first.chunk_start == start_ns + lost * CHUNK_NS
    assert first.gap_ns == lost * CHUNK_NS
    starts = sorted(e.chunk_start for e in sent)
    assert all(b - a == CHUNK_NS for a, b in zip(starts, starts[1:], strict=False))
    spool = DiskSpool(spool_dir, 2**30)
    assert spool.corrupt == 0  # what was written reads back whole
    assert not list(spool_dir.glob("*.tmp"))
