"""The disk spool keeps chunks in order across restarts, bounded, and says what it dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soundscape.envelope import ChunkEnvelope
from soundscape.producers.spool import DiskSpool

T0 = 1_714_541_400 * 10**9


def chunk(seq: int, size: int = 1000) -> tuple[ChunkEnvelope, bytes]:
    payload = os.urandom(size)
    envelope = ChunkEnvelope.for_payload(
        payload, station_id="marsh-03", chunk_start=T0 + seq * 10**10, sample_rate=32_000,
        seq=seq, captured_at=T0, gap_ns=seq,
    )
    return envelope, payload


def test_chunks_come_back_in_order_and_intact_after_a_restart(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    sent = [chunk(seq) for seq in (2, 0, 1)]
    for envelope, payload in sent:
        spool.put(envelope, payload)
    reopened = DiskSpool(tmp_path, max_bytes=10**6)  # a reboot
    assert [e.seq for e in reopened.entries()] == [0, 1, 2]
    assert reopened.depth == 3 and reopened.bytes == spool.bytes
    for entry in reopened.entries():
        envelope, payload = reopened.read(entry)  # type: ignore[misc]
        original = dict(sent)
        match = next(e for e in original if e.seq == entry.seq)
        assert payload == original[match] and envelope.gap_ns == entry.seq
        assert envelope.chunk_start == match.chunk_start
    assert reopened.oldest().seq == 0 and reopened.newest().seq == 2  # type: ignore[union-attr]


def test_remove_after_ack(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    spool.put(*chunk(0))
    assert spool.remove(0) and not spool.remove(0)
    assert spool.depth == 0 and spool.bytes == 0
    assert not list(tmp_path.glob("*.chunk"))


def test_full_spool_evicts_the_oldest_not_in_flight_and_counts(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    for seq in range(3):
        spool.put(*chunk(seq))
    one = max(e.size for e in spool.entries())
    spool.max_bytes = one * 3
    evicted = spool.put(*chunk(3), in_flight={0})
    assert evicted == 1 and spool.evicted == 1
    assert [e.seq for e in spool.entries()] == [0, 2, 3]  # 0 is being sent: 1 went
    assert spool.bytes <= one * 3


def test_skip_and_limit(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    for seq in range(5):
        spool.put(*chunk(seq))
    assert [e.seq for e in spool.entries(limit=2, skip={0, 2})] == [1, 3]


def test_torn_writes_are_discarded_and_damaged_files_moved_aside(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    for seq in range(3):
        spool.put(*chunk(seq))
    (tmp_path / "0000000000000003.tmp").write_bytes(b"half a chunk")  # power cut mid-write
    (tmp_path / "0000000000000004.chunk").write_bytes(b"garbage")
    victim = tmp_path / "0000000000000001.chunk"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the payload: the sha256 no longer matches
    victim.write_bytes(bytes(data))

    reopened = DiskSpool(tmp_path, max_bytes=10**6)
    assert not list(tmp_path.glob("*.tmp"))
    assert [e.seq for e in reopened.entries()] == [0, 1, 2]
    assert reopened.corrupt == 1  # the garbage file, found at start
    assert reopened.read(reopened.entries()[1]) is None  # the flipped bit, found on read
    assert reopened.corrupt == 2 and reopened.depth == 2
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == [
        "0000000000000001.chunk", "0000000000000004.chunk"]


def test_headers_of_the_wrong_shape_are_moved_aside_not_fatal(tmp_path: Path) -> None:
    """A header line that parses as JSON but is no object (a list, a number) once stopped
    the station at start-up (TypeError), and its payload read the forwarder's thread."""
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    spool.put(*chunk(0))
    magic = b"SOUNDSCAPE-SPOOL 1\n"
    (tmp_path / "0000000000000005.chunk").write_bytes(magic + b"[1, 2]\npayload")
    (tmp_path / "0000000000000006.chunk").write_bytes(magic + b"42\n")
    reopened = DiskSpool(tmp_path, max_bytes=10**6)
    assert [e.seq for e in reopened.entries()] == [0]
    assert reopened.corrupt == 2

    kept = tmp_path / "0000000000000000.chunk"
    kept.write_bytes(magic + b'["chunk_start"]\n' + b"payload")  # damaged after start-up
    assert reopened.read(reopened.entries()[0]) is None
    assert reopened.corrupt == 3 and reopened.depth == 0


def test_a_header_field_of_the_wrong_type_is_moved_aside_not_fatal(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    spool.put(*chunk(0))
    (tmp_path / "0000000000000007.chunk").write_bytes(
        b'SOUNDSCAPE-SPOOL 1\n{"chunk_start": [1]}\npayload')  # int([1]): TypeError
    reopened = DiskSpool(tmp_path, max_bytes=10**6)
    assert [e.seq for e in reopened.entries()] == [0]
    assert reopened.corrupt == 1


@pytest.mark.parametrize("seq", [0, 12345678])
def test_file_names_sort_by_seq(tmp_path: Path, seq: int) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10**6)
    spool.put(*chunk(seq))
    assert (tmp_path / f"{seq:016d}.chunk").exists()
