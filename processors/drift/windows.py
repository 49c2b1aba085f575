"""Event-time windows: tumbling (size = hop) or hopping (size a multiple of hop).

Windows start at multiples of the hop since 1970 (UTC), so every worker and every batch
run cuts the same windows, and a window is identified by its start. A window is built
from size/hop panes of one hop each, so hopping windows never count a chunk twice
within one pane. Times are ns integers, like chunk_start on the wire.

faust's own windowed tables are not used: they expire windows by the wall clock, so a
replayed archive's windows would close before their data arrived (and faust 0.15 never
hands the window's data to on_window_close). Closing by event time makes replays and
live data behave alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from soundscape.processors.drift.summary import NS
from soundscape.settings import DriftSettings


@dataclass(frozen=True)
class WindowSpec:
    size_ns: int
    hop_ns: int
    grace_ns: int = 0

    def __post_init__(self) -> None:
        if self.hop_ns <= 0 or self.size_ns % self.hop_ns:
            raise ValueError(f"window size {self.size_ns} is not a multiple of hop {self.hop_ns}")

    @classmethod
    def from_settings(cls, drift: DriftSettings) -> WindowSpec:
        return cls(drift.window_s * NS, drift.hop_s * NS, drift.grace_s * NS)

    @property
    def kind(self) -> str:
        return "tumbling" if self.size_ns == self.hop_ns else "hopping"

    def pane_start(self, ns: int) -> int:
        return ns - ns % self.hop_ns

    def first_window(self, ns: int) -> int:
        """Start of the earliest window that contains time `ns`."""
        return self.pane_start(ns) - self.size_ns + self.hop_ns

    def windows_of(self, ns: int) -> list[int]:
        """Starts of every window containing `ns`, earliest first."""
        return list(range(self.first_window(ns), self.pane_start(ns) + 1, self.hop_ns))

    def panes_of(self, window_start: int) -> range:
        return range(window_start, window_start + self.size_ns, self.hop_ns)

    def closes_at(self, window_start: int) -> int:
        """Event time (newest chunk end) at which the window is final."""
        return window_start + self.size_ns + self.grace_ns
