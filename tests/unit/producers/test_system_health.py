"""Machine readings for heartbeats: values where known, None where not."""

from __future__ import annotations

from pathlib import Path

from soundscape.producers import system_health


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    for name, kind, milli in (("thermal_zone0", "gpu-thermal", "61000"),
                              ("thermal_zone1", "cpu-thermal", "48312")):
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert system_health.cpu_temperature_c(tmp_path) == 48.3


def test_cpu_temperature_unknown_without_zones(tmp_path: Path) -> None:
    assert system_health.cpu_temperature_c(tmp_path) is None


def test_disk_free_of_a_folder_not_made_yet(tmp_path: Path) -> None:
    assert system_health.disk_free_bytes(tmp_path / "not" / "yet") > 0


def test_clock_offset_is_a_number_or_unknown() -> None:
    offset = system_health.clock_offset_ms()
    assert offset is None or abs(offset) < 60_000
