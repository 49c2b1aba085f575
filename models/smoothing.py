"""Neighbour-chunk smoothing (numpy only): a station's chunks follow each other in time, and
a bird singing in one 10 s chunk is likely singing in the next, so each chunk's
probabilities can borrow from its immediate neighbours.

Optional post-processing, measured by `models evaluate --smooth` with and without it. A
chunk's neighbours are the chunks of the same group (a station, a recording file) at the
previous and next position (its key order); a missing neighbour (the first or last chunk,
a gap in the positions, a refused chunk) drops out and the remaining weights are
renormalised, so smoothing never invents evidence from chunks that are not there.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothingOptions:
    """The window's weights: the previous chunk, the chunk itself, the next chunk."""

    previous: float = 0.25
    current: float = 0.5
    next: float = 0.25

    def __post_init__(self) -> None:
        if min(self.previous, self.current, self.next) < 0:
            raise ValueError(f"smoothing weights must not be negative: {self}")
        if self.current <= 0:  # a chunk without neighbours must keep its own figures
            raise ValueError(f"the chunk's own weight must be positive: {self}")


def smooth(probabilities: np.ndarray, keys: Sequence[tuple[Hashable, int]],
           options: SmoothingOptions = SmoothingOptions()) -> np.ndarray:
    """[n, C] probabilities mixed with each chunk's neighbours in its group.

    `keys[i]` is chunk i's (group, position); rows may come in any order and groups
    interleaved. Neighbours are the same group's positions - 1 and + 1; a row that is not
    finite (a refused chunk) stays as it is and is nobody's neighbour.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or len(keys) != len(probs):
        raise ValueError(f"need [n, C] probabilities and n keys, got {probs.shape} and {len(keys)}")
    rows = {}
    for index, key in enumerate(keys):
        group, position = key
        if (group, int(position)) in rows:
            raise ValueError(f"two chunks share the key {key!r}")
        rows[group, int(position)] = index
    finite = np.isfinite(probs).all(axis=1)
    total = options.current * probs
    weight = np.full(len(probs), options.current)
    for step, w in ((-1, options.previous), (1, options.next)):
        if not w:
            continue
        neighbour = np.array([rows.get((group, int(position) + step), -1)
                              for group, position in keys], dtype=np.int64)
        present = (neighbour >= 0) & finite
        present[present] &= finite[neighbour[present]]
        total[present] += w * probs[neighbour[present]]
        weight[present] += w
    out = total / weight[:, None]
    out[~finite] = probs[~finite]
    dtype = np.asarray(probabilities).dtype
    return out.astype(dtype if dtype.kind == "f" else np.float64)
