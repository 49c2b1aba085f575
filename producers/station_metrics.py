"""Prometheus metrics of a running station, read from its counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

_GAUGES = {
    "spool_depth": ("spool_depth_chunks", "Chunks on disk waiting for Kafka's ack"),
    "spool_bytes": ("spool_bytes", "Bytes in the disk spool"),
    "spool_oldest_age_s": ("spool_oldest_age_seconds", "Age of the oldest spooled chunk"),
    "in_flight": ("in_flight_chunks", "Chunks handed to Kafka, not yet acked"),
    "clock_drift_s": ("clock_drift_seconds", "Measured time minus the sample clock"),
    "edge_pending": ("edge_pending_results", "Edge results on disk waiting for Kafka's ack"),
}
_COUNTERS = {
    "chunks_captured": ("chunks_captured", "Chunks recorded and spooled"),
    "chunks_acked": ("chunks_acked", "Chunks acknowledged by Kafka"),
    "evicted_chunks": ("chunks_evicted", "Chunks dropped from a full spool"),
    "disk_full_chunks": ("chunks_lost_disk_full", "Chunks the full disk had no room for (gaps)"),
    "overruns": ("overruns", "Capture overruns (input overflow or a full hand-off queue)"),
    "dropped_samples": ("dropped_samples", "Samples lost (overruns, partial chunks at breaks)"),
    "gaps": ("gaps", "Chunks that follow missing audio"),
    "gap_s_total": ("gap_seconds", "Audio missing before chunks, seconds"),
    "delivery_failures": ("delivery_failures", "Failed deliveries (re-sent from the spool)"),
    "heartbeats_sent": ("heartbeats_sent", "Heartbeats sent"),
    "edge_scored": ("edge_scored", "Chunks scored on the station (edge results published)"),
    "edge_skipped": ("edge_skipped", "Chunks not scored on the station: scoring was behind"),
    "edge_refused": ("edge_refused", "Chunks edge scoring refused or failed on"),
    "edge_delivered": ("edge_delivered", "Edge results acknowledged by Kafka"),
    "edge_dropped": ("edge_dropped", "Unsent edge results dropped from a full outbox"),
}


class StationCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]], station_id: str) -> None:
        self._snapshot = snapshot
        self._station = station_id

    def collect(self) -> Iterator[Any]:
        data = self._snapshot()
        for key, (name, doc) in _GAUGES.items():
            family = GaugeMetricFamily(f"soundscape_station_{name}", doc, labels=["station"])
            family.add_metric([self._station], float(data.get(key) or 0))
            yield family
        for key, (name, doc) in _COUNTERS.items():
            family = CounterMetricFamily(f"soundscape_station_{name}", doc, labels=["station"])
            family.add_metric([self._station], float(data.get(key) or 0))
            yield family
        cpu = CounterMetricFamily("soundscape_station_cpu_seconds",
                                  "CPU time by pipeline stage", labels=["station", "stage"])
        for stage, seconds in sorted(data.get("cpu_s", {}).items()):
            cpu.add_metric([self._station, stage], seconds)
        yield cpu


def station_registry(snapshot: Callable[[], dict[str, Any]], station_id: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StationCollector(snapshot, station_id))
    return registry
