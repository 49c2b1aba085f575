"""Sources for stations that record to SD card first, and the generator."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from soundscape.producers.chunker import CHUNK_NS, Chunker
from soundscape.producers.sources import FileSource, SyntheticSource

T0 = 1_714_541_400 * 10**9


def _write(path: Path, seconds: int, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seconds).uniform(-0.1, 0.1, seconds * rate)
             .astype(np.float32), rate)


def _chunks(source: object) -> tuple[list[int], list[int], Chunker]:
    chunker = Chunker()
    out = []
    for block in source.blocks(threading.Event()):  # type: ignore[attr-defined]
        out += chunker.feed(block.samples, block.start_ns, block.lost_before)
    return [c.start_ns for c in out], [c.gap_ns for c in out], chunker


def test_card_files_join_when_contiguous_and_break_at_gaps(tmp_path: Path) -> None:
    card = tmp_path / "card"
    _write(card / "20240501_053000.WAV", 25, 48_000)  # 05:30:00 - 05:30:25
    _write(card / "20240501_053025.WAV", 15, 44_100)  # continues: 40 s = 4 chunks
    _write(card / "20240501_060000.WAV", 20, 32_000)  # half an hour later
    source = FileSource([str(card)], "pond-1")
    starts, gaps, chunker = _chunks(source)
    later = T0 + 1800 * 10**9
    assert starts == [T0 + k * CHUNK_NS for k in range(4)] + [later, later + CHUNK_NS]
    assert gaps == [0, 0, 0, 0, later - (T0 + 4 * CHUNK_NS), 0]
    assert chunker.stats.dropped_samples == 0


def test_synthetic_source_is_continuous_and_deterministic() -> None:
    stop = threading.Event()
    blocks = []
    for block in SyntheticSource(48_000, start_ns=T0, speed=0).blocks(stop):
        blocks.append(block)
        if len(blocks) == 12:
            stop.set()
    assert blocks[0].start_ns == T0 and all(b.start_ns is None for b in blocks[1:])
    assert all(b.frames == 48_000 and b.sample_rate == 48_000 for b in blocks[:11])
    again = next(iter(SyntheticSource(48_000, start_ns=T0, speed=0).blocks(threading.Event())))
    np.testing.assert_array_equal(again.samples, blocks[0].samples)


def test_capture_handoff_counts_overruns_and_marks_the_gap() -> None:
    from soundscape.producers.sources import CaptureHandoff

    handoff = CaptureHandoff(48_000, max_blocks=2)
    block = np.zeros(4800, np.float32)
    handoff.push(block, 100.0, 100.25, overflow=False, now_ns=T0)
    handoff.push(block, 100.1, 100.35, overflow=True, now_ns=T0 + 10**8)  # device overflow
    handoff.push(block, 100.2, 100.45, overflow=False, now_ns=T0 + 2 * 10**8)  # queue full
    first, second = handoff.get(0), handoff.get(0)
    assert first is not None and second is not None and handoff.get(0) is None
    assert first.start_ns == T0 - 250_000_000  # the ADC time, not the callback time
    assert not first.lost_before and second.lost_before
    assert handoff.overruns == 2 and handoff.dropped_frames == 4800
    handoff.push(block, 0.0, 0.0, overflow=False, now_ns=T0)  # no timestamps from the host API
    after = handoff.get(0)
    assert after is not None and after.lost_before  # the dropped block's gap is recorded
    assert after.start_ns == T0 - 100_000_000
