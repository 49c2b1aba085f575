"""Finding, probing and reading recordings; bad files become reasons, not crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscape.errors import UserError
from soundscape.producers.archive import (
    ArchiveReadError,
    Naming,
    Skipped,
    discover,
    model_rate_blocks,
    plan_runs,
    probe,
    probe_all,
)

T0 = 1_714_541_400 * 10**9


def write(path: Path, seconds: float, rate: int = 48_000, channels: int = 1, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    data = np.random.default_rng(0).uniform(-0.1, 0.1, (frames, channels)).astype(np.float32)
    sf.write(path, data, rate, **kw)
    return path


def test_discover_walks_folders_globs_and_files(tmp_path: Path) -> None:
    a = write(tmp_path / "card" / "20240501_053000.WAV", 1)
    b = write(tmp_path / "card" / "sub" / "20240501_060000.flac", 1)
    (tmp_path / "card" / "notes.txt").write_text("x")
    c = write(tmp_path / "other" / "20240501_070000.wav", 1)
    notes = tmp_path / "other" / "readme.md"
    notes.write_text("x")
    found, skipped = discover([str(tmp_path / "card"), str(tmp_path / "other" / "*.wav"),
                               str(a), str(notes)])
    assert found == sorted([a, b, c])
    assert [s.path for s in skipped] == [notes]


def test_missing_path_or_empty_glob_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        discover([str(tmp_path / "nope")])
    with pytest.raises(UserError, match="matches no file"):
        discover([str(tmp_path / "*.wav")])


def test_probe_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "marsh" / "20240501_053000.wav"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    junk = tmp_path / "marsh" / "20240501_053100.wav"
    junk.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    untimed = write(tmp_path / "marsh" / "morning.wav", 1)
    naming = Naming()
    assert "empty" in probe(empty, naming).reason  # type: ignore[union-attr]
    assert "not readable audio" in probe(junk, naming).reason  # type: ignore[union-attr]
    assert "no start time" in probe(untimed, naming).reason  # type: ignore[union-attr]
    nameless = write(tmp_path / "___" / "20240501_053000.wav", 1)
    assert "no station id" in probe(nameless, naming).reason  # type: ignore[union-attr]


def test_probe_reads_station_start_and_format(tmp_path: Path) -> None:
    path = write(tmp_path / "Marsh-03" / "20240501_053000.WAV", 2.5, rate=44_100, channels=2)
    item = probe(path, Naming())
    assert not isinstance(item, Skipped)
    assert (item.station_id, item.start_ns, item.frames, item.sample_rate, item.channels) == (
        "marsh-03", T0, 110_250, 44_100, 2)


def test_explicit_start_chains_a_stations_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.wav", 3)
    b = write(tmp_path / "b.wav", 2)
    files, skipped = probe_all([b, a], Naming(station="s1", start_ns=T0))
    assert not skipped
    assert [(f.path.name, f.start_ns) for f in files] == [("a.wav", T0), ("b.wav", T0 + 3 * 10**9)]


def test_plan_runs_joins_gaps_and_overlaps(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    paths = [
        write(folder / "20240501_053000.wav", 65),   # 05:30:00 - 05:31:05
        write(folder / "20240501_053105.wav", 30),   # continues it
        write(folder / "20240501_053200.wav", 10),   # after a 25 s gap: a new run
        write(folder / "20240501_053205.wav", 10),   # starts inside the previous: overlap
    ]
    files, _ = probe_all(paths, Naming())
    runs, skipped = plan_runs(files, tolerance_ns=10**9)
    assert [[f.path.name for f in run] for run in runs] == [
        ["20240501_053000.wav", "20240501_053105.wav"], ["20240501_053200.wav"]]
    assert skipped[0].path.name == "20240501_053205.wav" and "overlaps" in skipped[0].reason


def test_model_rate_blocks_resample_and_downmix(tmp_path: Path) -> None:
    path = write(tmp_path / "st" / "20240501_053000.flac", 25, rate=44_100, channels=2)
    item = probe(path, Naming())
    blocks = list(model_rate_blocks(item))  # type: ignore[arg-type]
    assert blocks[0].start_ns == T0 and all(b.start_ns is None for b in blocks[1:])
    assert sum(b.frames for b in blocks) == 25 * 32_000
    assert all(b.samples.ndim == 1 and b.sample_rate == 32_000 for b in blocks)


def test_truncated_file_yields_what_is_good_then_says_why(tmp_path: Path) -> None:
    path = write(tmp_path / "st" / "20240501_053000.flac", 30, rate=32_000)
    item = probe(path, Naming())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut after the header was read
    good = 0
    with pytest.raises(ArchiveReadError) as info:
        for block in model_rate_blocks(item):  # type: ignore[arg-type]
            good += block.frames
    assert 0 < good < 30 * 32_000
    assert "truncated" in info.value.reason or "read error" in info.value.reason
