"""The station's Prometheus families are read from its counters at scrape time."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from soundscape.producers.station_metrics import station_registry


def _samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_values_come_from_the_snapshot_at_each_scrape() -> None:
    counters = {"spool_depth": 3, "chunks_acked": 10, "cpu_s": {"encode": 1.5, "capture": 0.25}}
    registry = station_registry(lambda: counters, "pi-7")
    first = _samples(registry)
    station = (("station", "pi-7"),)
    assert first[("soundscape_station_spool_depth_chunks", station)] == 3
    assert first[("soundscape_station_chunks_acked_total", station)] == 10
    assert first[("soundscape_station_cpu_seconds_total",
                  (("stage", "encode"), ("station", "pi-7")))] == 1.5
    counters["chunks_acked"] = 11
    counters["spool_depth"] = 0
    second = _samples(registry)
    assert second[("soundscape_station_chunks_acked_total", station)] == 11
    assert second[("soundscape_station_spool_depth_chunks", station)] == 0


def test_missing_and_none_values_read_as_zero() -> None:
    samples = _samples(station_registry(lambda: {"clock_drift_s": None}, "pi-1"))
    station = (("station", "pi-1"),)
    assert samples[("soundscape_station_clock_drift_seconds", station)] == 0
    assert samples[("soundscape_station_gaps_total", station)] == 0
