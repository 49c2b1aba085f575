"""One station's drift state machine: chunks in, drift reports out, by event time.

`StationDrift.ingest` files a chunk into its pane (skipping redeliveries and chunks
whose windows are all closed), reports a silence the chunk ends, and closes every window
the station's newest chunk end has passed by more than the grace. Closing a window
compares it with its reference (the previous `reference_windows` window lengths, or a
pinned baseline) and reports its gaps. The state is plain data (`StationMeta`, panes in
a `PaneStore`), kept in faust tables by the stream and in dicts by the batch checks.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from soundscape.messages import DriftReport
from soundscape.processors.drift import checks
from soundscape.processors.drift.summary import CHUNK_NS, Observation, Pane, Summary
from soundscape.processors.drift.windows import WindowSpec
from soundscape.settings import DriftSettings

Outcome = Literal["used", "duplicate", "late"]
#: Baseline of a station for the `baseline` reference: its summary and a description.
BaselineSource = Callable[[str], tuple[Summary, checks.ReferenceInfo]]


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


class PaneStore(Protocol):
    def get(self, start: int) -> Pane | None: ...
    def put(self, pane: Pane) -> None: ...
    def delete(self, start: int) -> None: ...


class DictPaneStore:
    """Panes in memory (the batch checks, tests)."""

    def __init__(self) -> None:
        self.panes: dict[int, Pane] = {}

    def get(self, start: int) -> Pane | None:
        return self.panes.get(start)

    def put(self, pane: Pane) -> None:
        self.panes[pane.start] = pane

    def delete(self, start: int) -> None:
        self.panes.pop(start, None)


@dataclass
class StationMeta:
    station_id: str
    first_seen: int | None = None  # ns: earliest chunk start known (gaps count from it)
    watermark: int = 0  # ns: newest chunk end seen (event time of the station)
    next_window: int | None = None  # start of the next window to close
    panes: list[int] = field(default_factory=list)  # starts of the panes kept, sorted
    source: str = "live"  # of the newest chunk
    silence_reported: int | None = None  # chunk end whose silence was last reported
    partition: int | None = None  # of the detections topic (the stream's own note)
    late: int = 0
    duplicates: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StationMeta:
        return cls(**data)


@dataclass
class Ingested:
    outcome: Outcome
    reports: list[DriftReport]


class StationDrift:
    def __init__(
        self,
        meta: StationMeta,
        panes: PaneStore,
        drift: DriftSettings,
        baseline: BaselineSource | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if drift.reference == "baseline" and baseline is None:
            raise ValueError("reference=baseline needs a baseline source")
        self.meta = meta
        self.store = panes
        self.drift = drift
        self.spec = WindowSpec.from_settings(drift)
        self.baseline = baseline
        self.clock = clock

    # ---- chunks in ---------------------------------------------------------------------------
    def ingest(self, obs: Observation) -> Ingested:
        meta, spec = self.meta, self.spec
        if meta.next_window is None:
            meta.next_window = spec.first_window(obs.chunk_start)
        start = spec.pane_start(obs.chunk_start)
        reports: list[DriftReport] = []
        if start < meta.next_window:
            meta.late += 1
            return Ingested("late", reports)
        # A pane the station's metadata does not list is left over from changes Kafka
        # aborted (a stored pane and its listing commit together): start it afresh.
        pane = (self.store.get(start) if start in meta.panes else None) or Pane(start)
        if not pane.add(obs):
            meta.duplicates += 1
            return Ingested("duplicate", reports)
        self.store.put(pane)
        if start not in meta.panes:
            bisect.insort(meta.panes, start)
        if meta.watermark and obs.chunk_start > meta.watermark:
            reports += self.silence_reports(obs.chunk_start)
        meta.first_seen = min(meta.first_seen or obs.chunk_start, obs.chunk_start)
        meta.watermark = max(meta.watermark, obs.chunk_start + CHUNK_NS)
        meta.source = obs.source
        reports += self.close_due()
        return Ingested("used", reports)

    # ---- reports out -------------------------------------------------------------------------
    def silence_reports(self, now: int) -> list[DriftReport]:
        """A `silent` report if nothing came from the station for `silent_after_s` by `now`.

        Its window is [last chunk end, + silent_after_s], the same whoever finds it (the
        stream's timer, the next chunk, a batch run), so the sink stores it once.
        """
        last_end = self.meta.watermark
        if not last_end or self.meta.silence_reported == last_end:
            return []
        outcome = checks.silence_check(last_end, now, self.drift)
        if outcome is None:
            return []
        self.meta.silence_reported = last_end
        end = last_end + self.drift.silent_after_s * 1_000_000_000
        return [outcome.report(self.meta.station_id, last_end, end, self.clock())]

    def close_due(self, until: int | None = None) -> list[DriftReport]:
        """Close the windows the event time has passed (or, with `until`, those ending by it)."""
        meta, spec = self.meta, self.spec
        reports: list[DriftReport] = []
        while meta.next_window is not None and (
            spec.closes_at(meta.next_window) <= meta.watermark
            if until is None else meta.next_window + spec.size_ns <= until
        ):
            start = meta.next_window
            reports += self._evaluate(start)
            meta.next_window = self._next_window_after(start)
            self._prune()
        return reports

    def _evaluate(self, start: int) -> list[DriftReport]:
        end = start + self.spec.size_ns
        parts = self._panes_between(start, end)
        if not parts:
            return []
        window = Summary.merged(parts)
        station, created = self.meta.station_id, self.clock()
        outcomes = [checks.gap_check(window.chunks, start, end, self.meta.first_seen or start,
                                     self.drift)]
        reference = self._reference(start)
        if reference is not None:
            summary, info = reference
            if min(window.chunks, summary.chunks) >= self.drift.min_chunks:
                info = info | {"window_chunks": window.chunks, "windows": self.spec.kind}
                outcomes += checks.compare(window, summary, info, self.drift)
        return [o.report(station, start, end, created) for o in outcomes]

    def _reference(self, start: int) -> tuple[Summary, checks.ReferenceInfo] | None:
        if self.drift.reference == "baseline":
            assert self.baseline is not None and self.drift.baseline_end is not None
            if start < int(self.drift.baseline_end.timestamp()) * 1_000_000_000:
                return None  # windows inside the baseline are not compared with it
            return self.baseline(self.meta.station_id)
        span_start = start - self.drift.reference_windows * self.spec.size_ns
        summary = Summary.merged(self._panes_between(span_start, start))
        return summary, {"mode": "previous", "reference_start": iso(span_start),
                         "reference_end": iso(start), "reference_chunks": summary.chunks}

    def _panes_between(self, start: int, end: int) -> list[Summary]:
        starts = self.meta.panes
        chosen = starts[bisect.bisect_left(starts, start):bisect.bisect_left(starts, end)]
        panes = (self.store.get(s) for s in chosen)
        return [p.summary for p in panes if p is not None]

    def _next_window_after(self, start: int) -> int:
        """The next window holding data: empty stretches (a silent station) are skipped."""
        candidate = start + self.spec.hop_ns
        index = bisect.bisect_left(self.meta.panes, candidate)
        if index == len(self.meta.panes):
            return candidate
        return max(candidate, self.spec.first_window(self.meta.panes[index]))

    def _prune(self) -> None:
        """Forget panes no future window or reference needs."""
        meta = self.meta
        assert meta.next_window is not None
        keep_from = meta.next_window
        if self.drift.reference == "previous":
            keep_from -= self.drift.reference_windows * self.spec.size_ns
        cut = bisect.bisect_left(meta.panes, keep_from)
        for start in meta.panes[:cut]:
            self.store.delete(start)
        del meta.panes[:cut]
