"""What drift checks keep of a station's chunks: mergeable counts, not the chunks.

An `Observation` is the part of one scored chunk the checks use (from a detection message
or a `chunks` row). A `Summary` counts observations: top labels, fixed-bin histograms of
confidence and audio levels, sums of ratios. Summaries add up, so the stream keeps one per
pane (one hop of time) and merges panes into windows and references; its JSON form is
what the faust tables store. A `Pane` adds a bitmap of the 10-s slots seen, which
recognises a redelivered chunk and counts the missing ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soundscape.envelope import CHUNK_SECONDS
from soundscape.messages import Detection
from soundscape.processors.drift.measures import histogram_quantile

NS = 1_000_000_000
CHUNK_NS = CHUNK_SECONDS * NS


@dataclass(frozen=True)
class Observation:
    """One scored chunk as the drift checks see it."""

    station_id: str
    chunk_start: int  # ns
    source: str
    top_label: str
    top_probability: float
    rms_dbfs: float
    noise_floor_dbfs: float
    clipping_ratio: float
    silence_ratio: float
    spectral_centroid_hz: float

    @classmethod
    def from_detection(cls, message: Detection) -> Observation:
        audio = message.audio
        return cls(
            station_id=message.station_id, chunk_start=message.chunk_start,
            source=message.source, top_label=message.top.label,
            top_probability=message.top.probability, rms_dbfs=audio.rms_dbfs,
            noise_floor_dbfs=audio.noise_floor_dbfs, clipping_ratio=audio.clipping_ratio,
            silence_ratio=audio.silence_ratio, spectral_centroid_hz=audio.spectral_centroid_hz,
        )


@dataclass(frozen=True)
class Binning:
    """Even bins on [lo, hi]; values outside land in the first or last bin."""

    lo: float
    hi: float
    bins: int

    def index(self, value: float) -> int:
        position = int((value - self.lo) / (self.hi - self.lo) * self.bins)
        return min(max(position, 0), self.bins - 1)

    def dense(self, sparse: dict[int, int]) -> np.ndarray:
        counts = np.zeros(self.bins)
        for index, count in sparse.items():
            counts[index] = count
        return counts

    def median(self, sparse: dict[int, int]) -> float:
        return histogram_quantile(self.dense(sparse), self.lo, self.hi, 0.5)


#: Histogrammed quantities: bins fine enough for the thresholds (0.5 dB, 100 Hz, 0.01).
#: silence_ratio is also averaged (MEANS); its histogram, 0.05 bins (a quarter of the
#: threshold), serves the significance test only and keeps the panes small.
BINNINGS: dict[str, Binning] = {
    "confidence": Binning(0.0, 1.0, 100),
    "rms_dbfs": Binning(-120.0, 0.0, 240),
    "noise_floor_dbfs": Binning(-120.0, 0.0, 240),
    "spectral_centroid_hz": Binning(0.0, 24_000.0, 240),
    "silence_ratio": Binning(0.0, 1.0, 20),
}
#: Averaged quantities (shares of samples or frames).
MEANS = ("clipping_ratio", "silence_ratio")


@dataclass
class Summary:
    chunks: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, Counter[int]] = field(
        default_factory=lambda: {name: Counter() for name in BINNINGS}
    )
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MEANS, 0.0))

    def add(self, obs: Observation) -> None:
        self.chunks += 1
        self.labels[obs.top_label] += 1
        values = {"confidence": obs.top_probability, "rms_dbfs": obs.rms_dbfs,
                  "noise_floor_dbfs": obs.noise_floor_dbfs,
                  "spectral_centroid_hz": obs.spectral_centroid_hz,
                  "silence_ratio": obs.silence_ratio}
        for name, binning in BINNINGS.items():
            self.histograms[name][binning.index(values[name])] += 1
        self.sums["clipping_ratio"] += obs.clipping_ratio
        self.sums["silence_ratio"] += obs.silence_ratio

    def merge(self, other: Summary) -> None:
        self.chunks += other.chunks
        self.labels.update(other.labels)
        for name in BINNINGS:
            self.histograms[name].update(other.histograms[name])
        for name in MEANS:
            self.sums[name] += other.sums[name]

    @classmethod
    def merged(cls, parts: Iterable[Summary]) -> Summary:
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    @classmethod
    def of(cls, observations: Iterable[Observation]) -> Summary:
        summary = cls()
        for obs in observations:
            summary.add(obs)
        return summary

    def median(self, name: str) -> float:
        return BINNINGS[name].median(self.histograms[name])

    def mean(self, name: str) -> float:
        return self.sums[name] / self.chunks if self.chunks else 0.0

    def dense(self, name: str) -> np.ndarray:
        return BINNINGS[name].dense(self.histograms[name])

    # ---- JSON (faust table values) ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.chunks,
            "labels": dict(self.labels),
            "h": {name: {str(k): v for k, v in h.items()} for name, h in self.histograms.items()},
            "sums": dict(self.sums),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            chunks=int(data["n"]),
            labels=Counter({str(k): int(v) for k, v in data["labels"].items()}),
            histograms={
                name: Counter({int(k): int(v) for k, v in data["h"].get(name, {}).items()})
                for name in BINNINGS
            },
            sums={name: float(data["sums"].get(name, 0.0)) for name in MEANS},
        )


@dataclass
class Pane:
    """One hop of one station's time: its summary and which 10-s slots it has seen."""

    start: int  # ns, a multiple of the hop
    slots: int = 0  # bit i: a chunk started in [start + i*10 s, start + (i+1)*10 s)
    summary: Summary = field(default_factory=Summary)

    def add(self, obs: Observation) -> bool:
        """Count `obs` once; False when its slot was already seen (a redelivery)."""
        bit = 1 << ((obs.chunk_start - self.start) // CHUNK_NS)
        if self.slots & bit:
            return False
        self.slots |= bit
        self.summary.add(obs)
        return True

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "slots": format(self.slots, "x"), **self.summary.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pane:
        return cls(int(data["start"]), int(data["slots"], 16), Summary.from_json(data))
