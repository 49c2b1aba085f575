"""The station's one-record-per-file format: what is written reads back whole, and every
way a file can be damaged (a power cut, a hand edit, another program's file) is refused
with a ValueError that the spool and the outbox turn into a file moved aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.producers import framed_files

MAGIC = b"TEST-FORMAT 1\n"


def test_a_record_reads_back_whole_and_its_header_alone(tmp_path: Path) -> None:
    header = {"seq": "7", "note": "line\nbreak and unicode: \u00e9"}
    payload = b"\x00\n\xffbinary\n"
    path = tmp_path / "0007.chunk"
    framed_files.write(path, framed_files.encode(MAGIC, header, payload))
    assert framed_files.decode(MAGIC, path.read_bytes()) == (header, payload)
    assert framed_files.read_header(MAGIC, path) == header
    assert [p.name for p in tmp_path.iterdir()] == ["0007.chunk"]


@pytest.mark.parametrize("data, reason", [
    (b"", "magic"),
    (b"OTHER-FORMAT 1\n{}\npayload", "magic"),
    (MAGIC, "cut short"),
    (MAGIC + b'{"seq": "7"', "cut short"),
    (MAGIC + b"[1, 2]\npayload", "not a JSON object"),
    (MAGIC + b'"text"\n', "not a JSON object"),
    (MAGIC + b"{not json\n", "Expecting"),
    (MAGIC + b'{"a": "\xff"}\n', "utf-8"),
])
def test_damaged_records_are_refused_with_a_reason(tmp_path: Path, data: bytes,
                                                   reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        framed_files.decode(MAGIC, data)
    path = tmp_path / "x.chunk"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=reason):
        framed_files.read_header(MAGIC, path)


def test_leftover_temporaries_go_and_damaged_files_are_set_aside(tmp_path: Path) -> None:
    (tmp_path / "0001.tmp").write_bytes(b"half a write")
    (tmp_path / "0002.chunk.tmp").write_bytes(b"an older naming")
    kept = tmp_path / "0003.chunk"
    kept.write_bytes(b"whole")
    assert framed_files.discard_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0003.chunk"]

    moved = framed_files.set_aside(kept)
    assert moved == tmp_path / "corrupt" / "0003.chunk"
    assert moved.read_bytes() == b"whole" and not kept.exists()


def test_a_file_that_cannot_be_set_aside_is_removed(tmp_path: Path) -> None:
    (tmp_path / "corrupt").write_bytes(b"a file where the folder should be")
    damaged = tmp_path / "0004.chunk"
    damaged.write_bytes(b"garbage")
    assert framed_files.set_aside(damaged) is None
    assert not damaged.exists()
