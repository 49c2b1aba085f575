"""Cut a stream of audio blocks into exact 10 s chunks that abut, and keep gaps honest.

Time follows the sample count: within a continuous run, chunk k starts exactly
`k * 10 s` after the run's start, so consecutive chunks abut to the nanosecond. The clock
is consulted only to notice that the run and the world disagree:

* `lost_before` (an overrun, a restart, a gap between files): the samples before and
  after are not contiguous. The partial chunk is finished by the remainder rule and a new
  run starts on the block's true time; the next chunk's `gap_ns` says what is missing.
* the measured time of a block is later than the run's clock by more than the tolerance
  (the wall clock was stepped, or a device lost samples without saying so): the current
  chunk is completed from the contiguous samples, and the *next* chunk starts on the
  true time, with the difference recorded as its gap. Nothing is dropped.
* the measured time is earlier (the clock went backwards): the run keeps its own clock
  (chunks may not overlap), and the step is counted.

The remainder rule (end of a run): with `pad_min_samples` set, a partial chunk of at least
that many samples is padded with silence to 10 s and flagged (`padded_samples`), unless
the padding would overlap the audio that follows; otherwise it is dropped and counted in
`dropped_samples` (its time becomes part of the next chunk's gap). Live stations do not
pad; the archive replay does (`replay.min_remainder_s`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundscape.counters import Counters
from soundscape.envelope import CHUNK_SECONDS
from soundscape.producers.blocks import samples_to_ns

MODEL_RATE = 32_000
CHUNK_SAMPLES = MODEL_RATE * CHUNK_SECONDS
CHUNK_NS = CHUNK_SECONDS * 1_000_000_000


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Exactly CHUNK_SAMPLES mono float32 samples at MODEL_RATE, not yet encoded."""

    samples: np.ndarray
    start_ns: int
    gap_ns: int = 0
    padded_samples: int = 0

    @property
    def end_ns(self) -> int:
        return self.start_ns + CHUNK_NS


@dataclass
class ChunkerStats(Counters):
    chunks: int = 0
    gaps: int = 0
    gap_ns_total: int = 0
    dropped_samples: int = 0
    padded_chunks: int = 0
    padded_samples: int = 0
    clock_steps_back: int = 0
    #: latest measured time minus the run's clock, ns (positive: the run is behind)
    clock_drift_ns: int = 0


class Chunker:
    """Feed blocks at MODEL_RATE (mono); get RawChunks back as they complete."""

    def __init__(
        self,
        *,
        step_tolerance_ns: int = 1_000_000_000,
        pad_min_samples: int | None = None,
        last_end_ns: int | None = None,
        sample_rate: int = MODEL_RATE,
    ) -> None:
        if sample_rate != MODEL_RATE:
            raise ValueError(f"the chunker works at {MODEL_RATE} Hz, got {sample_rate}")
        self.step_tolerance_ns = step_tolerance_ns
        self.pad_min_samples = pad_min_samples
        #: end of the last chunk emitted (restored from a station's state after a restart)
        self.last_end_ns = last_end_ns
        self.stats = ChunkerStats()
        self._parts: list[np.ndarray] = []
        self._pending = 0
        self._pending_start_ns: int | None = None  # time of the first pending sample
        self._shift_ns = 0  # correction applied at the next chunk boundary

    # ---- state ---------------------------------------------------------------------------
    @property
    def pending_samples(self) -> int:
        return self._pending

    @property
    def in_run(self) -> bool:
        return self._pending_start_ns is not None

    @property
    def next_sample_ns(self) -> int | None:
        """Where the run's clock puts the next sample fed (None before the first block)."""
        if self._pending_start_ns is None:
            return None
        return self._pending_start_ns + samples_to_ns(self._pending, MODEL_RATE) + self._shift_ns

    # ---- feeding ---------------------------------------------------------------------------
    def feed(
        self, samples: np.ndarray, start_ns: int | None = None, lost_before: bool = False
    ) -> list[RawChunk]:
        """Append mono samples; `start_ns` is their measured time (None: trust the count)."""
        out: list[RawChunk] = []
        expected = self.next_sample_ns
        if expected is None:
            if start_ns is None:
                raise ValueError("the first block of a run needs its start time")
            self._begin(start_ns)
        elif lost_before:
            if start_ns is None:
                raise ValueError("a block after lost samples needs its start time")
            start = max(start_ns, expected)  # lost samples cannot make time run backwards
            out += self.end_run(next_start_ns=start)
            self._begin(start)
        elif start_ns is not None:
            drift = start_ns - expected
            self.stats.clock_drift_ns = drift
            if drift > self.step_tolerance_ns:
                if self._pending == 0:
                    self._pending_start_ns = start_ns  # on a boundary: retime now
                    self._shift_ns = 0
                else:
                    self._shift_ns += drift  # retime at the next boundary
            elif drift < -self.step_tolerance_ns:
                self.stats.clock_steps_back += 1
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size:
            self._parts.append(samples)
            self._pending += samples.size
        while self._pending >= CHUNK_SAMPLES:
            out.append(self._emit(self._take(CHUNK_SAMPLES), padded=0))
        return out

    def end_run(self, next_start_ns: int | None = None) -> list[RawChunk]:
        """Finish the run by the remainder rule; `next_start_ns`: when audio resumes."""
        out: list[RawChunk] = []
        if self._pending:
            remainder = self._pending
            start = self._pending_start_ns
            assert start is not None
            fits = next_start_ns is None or start + CHUNK_NS <= next_start_ns
            if self.pad_min_samples is not None and remainder >= self.pad_min_samples and fits:
                audio = np.concatenate(
                    [self._take(remainder), np.zeros(CHUNK_SAMPLES - remainder, np.float32)]
                )
                out.append(self._emit(audio, padded=CHUNK_SAMPLES - remainder))
            else:
                self._take(remainder)
                self.stats.dropped_samples += remainder
        self._parts, self._pending = [], 0
        self._pending_start_ns, self._shift_ns = None, 0
        return out

    # ---- internals ---------------------------------------------------------------------
    def _begin(self, start_ns: int) -> None:
        self._parts, self._pending = [], 0
        self._pending_start_ns, self._shift_ns = start_ns, 0

    def _take(self, count: int) -> np.ndarray:
        joined = np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
        head, rest = joined[:count], joined[count:]
        self._parts = [rest] if rest.size else []
        self._pending = int(rest.size)
        return head

    def _emit(self, samples: np.ndarray, padded: int) -> RawChunk:
        start = self._pending_start_ns
        assert start is not None
        gap = 0
        if self.last_end_ns is not None and start > self.last_end_ns:
            gap = start - self.last_end_ns
            self.stats.gaps += 1
            self.stats.gap_ns_total += gap
        chunk = RawChunk(samples=samples, start_ns=start, gap_ns=gap, padded_samples=padded)
        self.last_end_ns = chunk.end_ns
        self._pending_start_ns = chunk.end_ns + self._shift_ns
        self._shift_ns = 0
        self.stats.chunks += 1
        if padded:
            self.stats.padded_chunks += 1
            self.stats.padded_samples += padded
        return chunk
