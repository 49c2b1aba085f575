"""The station's edge outbox: results survive a new process, oldest first; the bound drops
the oldest (counted); damaged files and leftovers of a cut write are put aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.producers.edge_outbox import EdgeOutbox, PendingResult

T0 = 1_714_541_400 * 10**9


def _result(k: int) -> PendingResult:
    return PendingResult(T0 + k * 10**10, b"pi-1", b'{"chunk": %d}' % k,
                         [("signer", b"pi-1"), ("signature", bytes([k, 0, 255]))])


def test_results_outlive_the_process_and_come_back_oldest_first(tmp_path: Path) -> None:
    outbox = EdgeOutbox(tmp_path, max_results=10)
    for k in (2, 0, 1):
        outbox.put(_result(k))
    outbox.done(T0 + 10**10)
    again = EdgeOutbox(tmp_path, max_results=10)
    assert again.depth == 2
    assert again.pending() == [_result(0), _result(2)]


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = EdgeOutbox(tmp_path, max_results=3)
    for k in range(5):
        outbox.put(_result(k))
    assert outbox.depth == 3 and outbox.dropped == 2
    assert [r.chunk_start for r in EdgeOutbox(tmp_path, 3).pending()] == \
        [T0 + k * 10**10 for k in (2, 3, 4)]


def test_damaged_files_are_set_aside_and_cut_writes_discarded(tmp_path: Path) -> None:
    outbox = EdgeOutbox(tmp_path, max_results=10)
    outbox.put(_result(0))
    (tmp_path / f"{T0 + 10**10:020d}.result").write_bytes(b"garbage")
    (tmp_path / "notanumber.result").write_bytes(b"x")
    (tmp_path / f"{T0:020d}.result.tmp").write_bytes(b"half a result")
    again = EdgeOutbox(tmp_path, max_results=10)
    assert again.pending() == [_result(0)]
    assert again.corrupt == 2 and again.depth == 1
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == \
        [f"{T0 + 10**10:020d}.result", "notanumber.result"]
    assert not list(tmp_path.glob("*.tmp"))


def test_an_outbox_holds_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EdgeOutbox(tmp_path, max_results=0)


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"key": "cGktMQ==", "headers": 7}',
                                    b'{"key": "not base64!", "headers": []}',
                                    b'{"headers": []}'])
def test_headers_of_the_wrong_shape_are_set_aside(tmp_path: Path, header: bytes) -> None:
    outbox = EdgeOutbox(tmp_path, max_results=10)
    outbox.put(_result(0))
    (tmp_path / f"{T0 + 10**10:020d}.result").write_bytes(
        b"SOUNDSCAPE-EDGE-RESULT 1\n" + header + b"\n{}")
    again = EdgeOutbox(tmp_path, max_results=10)
    assert again.pending() == [_result(0)]
    assert again.corrupt == 1 and again.depth == 1
