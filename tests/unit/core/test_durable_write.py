"""A durable write replaces the file whole and leaves no temporary behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from soundscape import durable_write
from soundscape.durable_write import write_durably


def test_a_durable_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "chunk.flac"
    write_durably(target, b"first")
    write_durably(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    custom = tmp_path / ".chunk.flac.42.tmp"
    write_durably(target, b"third", custom)
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk.flac"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full disk itself is exercised on a real tmpfs in
    tests/integration/producers/test_station_full_disk.py; here the failure is made
    certain, so that the clean-up is seen, not raced."""
    target = tmp_path / "chunk.flac"
    write_durably(target, b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(durable_write.os, "fsync", no_space)
    with pytest.raises(OSError) as raised:
        write_durably(target, b"new, never stored")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk.flac"]
