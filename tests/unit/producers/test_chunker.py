"""The chunker's rules: exact 10 s chunks that abut, gaps recorded, nothing hidden."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundscape.producers.chunker import CHUNK_NS, CHUNK_SAMPLES, MODEL_RATE, Chunker

T0 = 1_714_541_400 * 10**9  # 2024-05-01 05:30:00 UTC
NS_PER_SAMPLE = 10**9 // MODEL_RATE


def ramp(start: int, count: int) -> np.ndarray:
    """Samples that say where they came from, so lost or repeated audio shows."""
    return (np.arange(start, start + count) % 1_000_000).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 90_000), min_size=1, max_size=40))
def test_any_block_sizes_give_abutting_chunks_of_exact_length(sizes: list[int]) -> None:
    chunker = Chunker()
    chunks, fed = [], 0
    for index, size in enumerate(sizes):
        chunks += chunker.feed(ramp(fed, size), T0 if index == 0 else None)
        fed += size
    assert len(chunks) == fed // CHUNK_SAMPLES
    assert chunker.pending_samples == fed % CHUNK_SAMPLES
    for k, chunk in enumerate(chunks):
        assert chunk.samples.shape == (CHUNK_SAMPLES,)
        assert chunk.start_ns == T0 + k * CHUNK_NS
        assert chunk.gap_ns == 0
        np.testing.assert_array_equal(chunk.samples, ramp(k * CHUNK_SAMPLES, CHUNK_SAMPLES))


def test_first_block_needs_a_time() -> None:
    with pytest.raises(ValueError, match="start time"):
        Chunker().feed(np.zeros(10, np.float32))


def test_lost_samples_drop_the_partial_chunk_and_record_the_gap() -> None:
    chunker = Chunker()
    chunks = chunker.feed(ramp(0, CHUNK_SAMPLES + 1000), T0)
    assert len(chunks) == 1
    resume = T0 + CHUNK_NS + 5 * 10**9  # 5 s later: an overrun lost audio
    chunks = chunker.feed(ramp(0, CHUNK_SAMPLES), resume, lost_before=True)
    assert [c.start_ns for c in chunks] == [resume]
    assert chunks[0].gap_ns == 5 * 10**9  # from the end of the last chunk kept
    assert chunker.stats.dropped_samples == 1000
    assert chunker.stats.gaps == 1 and chunker.stats.gap_ns_total == 5 * 10**9


def test_lost_samples_never_move_time_backwards() -> None:
    chunker = Chunker()
    chunker.feed(ramp(0, CHUNK_SAMPLES), T0)
    chunks = chunker.feed(ramp(0, CHUNK_SAMPLES), T0, lost_before=True)  # a bogus early time
    assert chunks[0].start_ns == T0 + CHUNK_NS


def test_clock_step_forward_completes_the_chunk_then_retimes() -> None:
    chunker = Chunker(step_tolerance_ns=10**9)
    half = CHUNK_SAMPLES // 2
    out = chunker.feed(ramp(0, half), T0)
    # The next block is contiguous, but the clock says 3 s more passed than samples did.
    step = 3 * 10**9
    out += chunker.feed(ramp(half, CHUNK_SAMPLES), T0 + half * NS_PER_SAMPLE + step)
    assert len(out) == 1
    np.testing.assert_array_equal(out[0].samples, ramp(0, CHUNK_SAMPLES))  # nothing dropped
    assert out[0].start_ns == T0 and out[0].gap_ns == 0
    out = chunker.feed(ramp(half + CHUNK_SAMPLES, half))
    assert out[0].start_ns == T0 + CHUNK_NS + step  # the next chunk starts on the true time
    assert out[0].gap_ns == step
    assert chunker.stats.dropped_samples == 0


def test_small_jitter_is_ignored() -> None:
    chunker = Chunker(step_tolerance_ns=10**9)
    out = chunker.feed(ramp(0, 1000), T0)
    out += chunker.feed(ramp(1000, CHUNK_SAMPLES), T0 + 1000 * NS_PER_SAMPLE + 40_000_000)
    out += chunker.feed(ramp(0, CHUNK_SAMPLES))
    assert [c.start_ns for c in out] == [T0, T0 + CHUNK_NS]
    assert chunker.stats.gaps == 0


def test_clock_stepping_back_keeps_the_sample_clock() -> None:
    chunker = Chunker(step_tolerance_ns=10**9)
    chunker.feed(ramp(0, 1000), T0)
    out = chunker.feed(ramp(1000, CHUNK_SAMPLES * 2), T0 - 60 * 10**9)
    assert [c.start_ns for c in out] == [T0, T0 + CHUNK_NS]
    assert chunker.stats.clock_steps_back == 1


def test_restart_records_the_gap_since_the_last_chunk() -> None:
    last_end = T0 + CHUNK_NS
    chunker = Chunker(last_end_ns=last_end)
    out = chunker.feed(ramp(0, CHUNK_SAMPLES), last_end + 42 * 10**9)
    assert out[0].gap_ns == 42 * 10**9


@pytest.mark.parametrize(
    ("remainder", "next_start", "padded"),
    [
        (MODEL_RATE * 3, None, True),  # long enough, nothing follows: padded
        (MODEL_RATE * 1, None, False),  # shorter than the minimum: dropped
        (MODEL_RATE * 3, T0 + CHUNK_NS + 5 * 10**9, False),  # padding would overlap: dropped
        (MODEL_RATE * 3, T0 + 2 * CHUNK_NS, True),  # the next run starts after it: padded
    ],
)
def test_remainder_rule(remainder: int, next_start: int | None, padded: bool) -> None:
    chunker = Chunker(pad_min_samples=2 * MODEL_RATE)
    chunker.feed(ramp(0, CHUNK_SAMPLES + remainder), T0)
    out = chunker.end_run(next_start_ns=next_start)
    if padded:
        assert len(out) == 1 and out[0].padded_samples == CHUNK_SAMPLES - remainder
        assert out[0].start_ns == T0 + CHUNK_NS
        np.testing.assert_array_equal(out[0].samples[:remainder],
                                      ramp(CHUNK_SAMPLES, remainder))
        assert not out[0].samples[remainder:].any()
        assert chunker.stats.padded_chunks == 1
    else:
        assert out == [] and chunker.stats.dropped_samples == remainder
    assert not chunker.in_run


def test_live_stations_never_pad() -> None:
    chunker = Chunker()
    chunker.feed(ramp(0, CHUNK_SAMPLES - 1), T0)
    assert chunker.end_run() == []
    assert chunker.stats.dropped_samples == CHUNK_SAMPLES - 1


def test_only_the_model_rate_is_accepted() -> None:
    with pytest.raises(ValueError, match="32000"):
        Chunker(sample_rate=48_000)
