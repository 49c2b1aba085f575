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
) -> np.ndarray:
    """Return the chunk as float32 [samples], or raise ChunkError saying what is wrong."""
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
    bad = array.size - int(finite.sum())
    if bad == array.size:
        raise ChunkError("chunk has no finite samples (all NaN or Inf)")
    if bad > max_nonfinite_fraction * array.size:
        raise ChunkError(
            f"{bad} of {array.size} samples are NaN or Inf "
            f"({bad / array.size:.2%}, at most {max_nonfinite_fraction:.2%} are repaired)"
        )
    out = np.zeros(params.samples, dtype=np.float32)
    usable = min(array.size, params.samples)
    out[:usable] = np.where(finite[:usable], array[:usable], 0.0)
    return out


@dataclass(frozen=True)
class PreparedBatch:
    """The chunks that passed, stacked, and why the others did not."""

    pcm: np.ndarray  # float32 [len(index), samples]
    index: tuple[int, ...]  # input position of each row of `pcm`
    errors: dict[int, str]  # input position -> reason


def prepare_batch(
    chunks: Sequence[np.ndarray],
    params: FeatureParams = FEATURES,
    length_tolerance_ms: float = DEFAULT_LENGTH_TOLERANCE_MS,
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
) -> PreparedBatch:
    rows: list[np.ndarray] = []
    index: list[int] = []
    errors: dict[int, str] = {}
    for position, chunk in enumerate(chunks):
        try:
            rows.append(prepare_chunk(chunk, params, length_tolerance_ms, max_nonfinite_fraction))
            index.append(position)
        except ChunkError as exc:
            errors[position] = str(exc)
    pcm = np.stack(rows) if rows else np.zeros((0, params.samples), dtype=np.float32)
    return PreparedBatch(pcm=pcm, index=tuple(index), errors=errors)
