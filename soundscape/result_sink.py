"""Where results are stored, as an interface: the sink's writer (sinks/) implements it;
drift's batch checks and the demo receive one instead of building the sink's writer.

`write` is idempotent per result key (a redelivered batch adds no rows) and commits the
whole batch or none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from soundscape.counters import Counters
from soundscape.detection_decoder import AnyDetection
from soundscape.messages import DriftReport, Heartbeat
from soundscape.settings import Settings


class DatabaseUnavailable(Exception):
    """The database cannot take the batch now; nothing of it was committed."""


class RowsRejected(Exception):
    """A value in the batch was refused (bad data, not a bad connection): by the database,
    or by the writer (an embedding that is not base64 of float16 values)."""


@dataclass
class ResultBatch:
    #: messages.Detection, or the sink's fast-path struct of one (detection_decoder)
    detections: list[AnyDetection] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    drift: list[DriftReport] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.detections) + len(self.heartbeats) + len(self.drift)


@dataclass
class WriteCounts(Counters):
    chunks: int = 0
    detections: int = 0
    heartbeats: int = 0
    drift_reports: int = 0
    #: Messages whose row was already stored (redelivered or replayed).
    duplicates: int = 0
    #: Messages older than the retention horizon, not stored.
    expired: int = 0
    partitions_created: list[str] = field(default_factory=list)


class ResultSink(Protocol):
    def write(self, batch: ResultBatch) -> WriteCounts: ...

    def close(self) -> None: ...


#: (settings, application_name) -> an open sink; the wiring (app/) chooses the implementation.
ResultSinkFactory = Callable[[Settings, str], ResultSink]
