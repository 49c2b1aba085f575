"""Per-chunk input checks shared by the runtime and the reference front-end.

A batch must never fail because of one bad chunk, and nothing undefined may reach the
branches: each chunk is either made exactly `samples` long and float32 (a few samples
short or long, as resampling leaves them, are padded or trimmed) or refused with a
sentence saying why. Silence, clipping and DC offsets are not errors: the front-end
turns them into defined features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soundscape.frontend_params import FEATURES, FeatureParams
from soundscape.settings import FrontendSettings

#: settings.frontend's defaults (services pass the configured values).
DEFAULT_LENGTH_TOLERANCE_MS: float = FrontendSettings().length_tolerance_ms
DEFAULT_MAX_NONFINITE_FRACTION: float = FrontendSettings().max_nonfinite_fraction


class ChunkError(ValueError):
    """One chunk the front-end refuses; the message is meant for a dead-letter reason."""


def prepare_chunk(
    chunk: np.ndarray,
    params: FeatureParams = FEATURES,
    length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Return the chunk as float32 [samples] (written into `out` when given), or raise
    ChunkError saying what is wrong."""
    array = np.asarray(chunk)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ChunkError(f"expected mono audio (1-D), got shape {array.shape}")
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif not np.issubdtype(array.dtype, np.floating):
        raise ChunkError(f"expected float or int16 samples, got {array.dtype}")
    if array.size == 0:
        raise ChunkError("chunk is empty")
    tolerance = int(round(length_tolerance_ms * params.sample_rate / 1000))
    if abs(array.size - params.samples) > tolerance:
        raise ChunkError(
            f"chunk has {array.size} samples ({array.size / params.sample_rate:.3f} s), "
            f"expected {params.samples} ({params.seconds:g} s at {params.sample_rate} Hz, "
            f"within {length_tolerance_ms:g} ms)"
        )
    finite = np.isfinite(array)
    bad = array.size - np.count_nonzero(finite)
    if bad == array.size:
        raise ChunkError("chunk has no finite samples (all NaN or Inf)")
    if bad > max_nonfinite_fraction * array.size:
        raise ChunkError(
            f"{bad} of {array.size} samples are NaN or Inf "
            f"({bad / array.size:.2%}, at most {max_nonfinite_fraction:.2%} are repaired)"
        )
    if out is None:
        out = np.empty(params.samples, dtype=np.float32)
    usable = min(array.size, params.samples)
    out[:usable] = array[:usable]
    out[usable:] = 0.0
    if bad:
        out[:usable][~finite[:usable]] = 0.0
    return out


@dataclass(frozen=True)
class PreparedBatch:
    """The chunks that passed, stacked, and why the others did not."""

    pcm: np.ndarray  # float32 [len(index), samples]
    index: tuple[int, ...]  # input position of each row of `pcm`
    errors: dict[int, str]  # input position -> reason


def prepare_batch(
    chunks: Sequence[np.ndarray] | np.ndarray,
    params: FeatureParams = FEATURES,
    length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
) -> PreparedBatch:
    """Check every chunk; the ones that pass are stacked in order.

    A float32 [batch, samples] array that is finite throughout (a worker's decoded batch)
    is used as it is: nothing in it needs repair, and copying it chunk by chunk cost a
    full-size worker about 1.6 ms per chunk on its one scoring thread. Callers must not
    change `pcm` afterwards (the front-ends only read it)."""
    if (isinstance(chunks, np.ndarray) and chunks.dtype == np.float32 and chunks.ndim == 2
            and chunks.shape[1] == params.samples and len(chunks)
            and np.isfinite(chunks).all()):
        return PreparedBatch(pcm=np.ascontiguousarray(chunks), index=tuple(range(len(chunks))),
                             errors={})
    pcm = np.empty((len(chunks), params.samples), dtype=np.float32)
    index: list[int] = []
    errors: dict[int, str] = {}
    for position, chunk in enumerate(chunks):
        try:
            prepare_chunk(chunk, params, length_tolerance_ms, max_nonfinite_fraction,
                          out=pcm[len(index)])
            index.append(position)
        except ChunkError as exc:
            errors[position] = str(exc)
    return PreparedBatch(pcm=pcm[:len(index)], index=tuple(index), errors=errors)
