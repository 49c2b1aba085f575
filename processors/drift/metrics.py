"""Prometheus metrics of the drift checks, served on /metrics (soundscape.observability)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CHUNKS = Counter(
    "soundscape_drift_chunks_total",
    "Detection messages the drift checks read, by outcome (used, duplicate, late, invalid)",
    ["outcome"],
)
REPORTS = Counter(
    "soundscape_drift_reports_total", "Drift reports published, by check and alert",
    ["check", "alert"],
)
EVENT_TIME = Gauge(
    "soundscape_drift_event_time_seconds",
    "Newest chunk end the stream has seen (its event-time clock)",
)
