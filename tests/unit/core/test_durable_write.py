"""A durable write replaces the file whole and leaves no temporary behind."""

from __future__ import annotations

from pathlib import Path

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
