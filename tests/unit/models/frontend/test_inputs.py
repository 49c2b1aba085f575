"""Per-chunk input rules: repair what is safely repairable, refuse the rest by name."""

from __future__ import annotations

import numpy as np
import pytest

from soundscape.frontend_inputs import ChunkError, prepare_batch, prepare_chunk

N = 320_000


def test_exact_float_chunk_passes_unchanged() -> None:
    chunk = np.random.default_rng(0).uniform(-1, 1, N).astype(np.float32)
    out = prepare_chunk(chunk)
    assert out.dtype == np.float32 and np.array_equal(out, chunk)


def test_int16_and_column_vectors_are_accepted() -> None:
    pcm = np.full((N, 1), 16384, dtype=np.int16)
    assert np.all(prepare_chunk(pcm) == 0.5)


def test_slightly_short_or_long_is_padded_or_trimmed() -> None:
    short = prepare_chunk(np.ones(N - 100, np.float32))
    assert short.shape == (N,) and short[: N - 100].all() and not short[N - 100 :].any()
    assert prepare_chunk(np.ones(N + 1600, np.float32)).shape == (N,)


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (np.ones(N - 1601, np.float32), "expected 320000"),
        (np.ones(4 * 32000, np.float32), "4.000 s"),
        (np.zeros(0, np.float32), "empty"),
        (np.full(N, np.nan, np.float32), "no finite samples"),
        (np.concatenate([np.full(N // 50, np.inf), np.zeros(N - N // 50)]).astype(np.float32),
         "are NaN or Inf"),
        (np.zeros((2, N), np.float32), "mono"),
        (np.zeros(N, np.int32), "float or int16"),
    ],
)
def test_bad_chunks_are_refused_with_a_reason(chunk: np.ndarray, message: str) -> None:
    with pytest.raises(ChunkError, match=message):
        prepare_chunk(chunk)


def test_a_few_nonfinite_samples_become_zero() -> None:
    chunk = np.ones(N, np.float32)
    chunk[[3, 99, 1000]] = [np.nan, np.inf, -np.inf]
    out = prepare_chunk(chunk)
    assert np.all(np.isfinite(out)) and out[[3, 99, 1000]].tolist() == [0, 0, 0]


def test_settings_change_the_limits() -> None:
    with pytest.raises(ChunkError):
        prepare_chunk(np.ones(N - 10, np.float32), length_tolerance_ms=0)
    chunk = np.ones(N, np.float32)
    chunk[: N // 10] = np.nan
    assert prepare_chunk(chunk, max_nonfinite_fraction=0.2)[0] == 0


def test_batch_keeps_good_chunks_and_names_the_bad() -> None:
    good = np.zeros(N, np.float32)
    batch = prepare_batch([good, np.full(N, np.nan), good + 0.1, np.zeros(10)])
    assert batch.index == (0, 2) and batch.pcm.shape == (2, N)
    assert set(batch.errors) == {1, 3} and "finite" in batch.errors[1]
    empty = prepare_batch([np.zeros(5)])
    assert empty.pcm.shape == (0, N) and empty.index == ()


def test_a_clean_float32_batch_is_used_as_it_is() -> None:
    """A worker's decoded batch: no copy; one NaN anywhere sends it through the checks."""
    batch = np.random.default_rng(1).uniform(-1, 1, (3, N)).astype(np.float32)
    prepared = prepare_batch(batch)
    assert prepared.pcm is batch or np.shares_memory(prepared.pcm, batch)
    assert prepared.index == (0, 1, 2) and prepared.errors == {}

    batch[1, 7] = np.nan
    repaired = prepare_batch(batch)
    assert not np.shares_memory(repaired.pcm, batch)
    assert repaired.index == (0, 1, 2)
    assert repaired.pcm[1, 7] == 0.0 and np.isnan(batch[1, 7])  # the caller's data untouched
    np.testing.assert_array_equal(repaired.pcm[[0, 2]], batch[[0, 2]])

    short = prepare_batch(np.ones((2, N - 1), np.float32))  # within tolerance: padded
    assert short.pcm.shape == (2, N) and np.all(short.pcm[:, -1] == 0)


def test_rows_after_a_refused_chunk_keep_their_order() -> None:
    rows = [np.full(N, 0.1, np.float32), np.zeros(10, np.float32),
            np.full(N, 0.3, np.float32), np.full(N, np.inf, np.float32),
            np.full(N, 0.5, np.float32)]
    prepared = prepare_batch(rows)
    assert prepared.index == (0, 2, 4) and sorted(prepared.errors) == [1, 3]
    np.testing.assert_allclose(prepared.pcm[:, 0], [0.1, 0.3, 0.5])
