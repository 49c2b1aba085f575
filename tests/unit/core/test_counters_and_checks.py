"""The shared counters base and the drift check names the dashboards rely on."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from soundscape.counters import Counters
from soundscape.drift_checks import CHECKS
from soundscape.settings import Settings


@dataclasses.dataclass
class _Inner(Counters):
    n: int = 0


@dataclasses.dataclass
class _Outer(Counters):
    chunks: int = 0
    seconds: float = 0.0
    failed: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    started: datetime | None = None
    path: Path | None = None


def test_counters_add_numbers_extend_lists_and_or_flags() -> None:
    total = _Outer(chunks=2, seconds=0.5, errors=["a"], inner=_Inner(1))
    total.add(_Outer(chunks=3, seconds=0.25, failed=True, errors=["b"], inner=_Inner(4)))
    assert (total.chunks, total.seconds, total.failed, total.errors, total.inner.n) == (
        5, 0.75, True, ["a", "b"], 5)


def test_counters_report_json_ready_values() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = _Outer(seconds=1 / 3, started=when, path=Path("/x/y"), inner=_Inner(2)).as_dict()
    assert report == {"chunks": 0, "seconds": 0.333, "failed": False, "errors": [],
                      "inner": {"n": 2}, "started": "2026-01-02T03:04:05+00:00", "path": "/x/y"}


def test_every_drift_check_names_a_real_threshold_setting() -> None:
    drift = Settings().drift
    for check, (kind, setting, meaning) in CHECKS.items():
        assert kind in ("input", "prediction", "health"), check
        assert hasattr(drift, setting), f"{check}: no drift setting {setting}"
        assert meaning
