"""The main job's real-birds part (`soundscape demo` after the synthetic archive): BirdNET
imported (or found), the real recordings replayed through it, species read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.app.demo import birdnet_available, run_birdnet_demo
from soundscape.settings import Settings
from soundscape.sinks import migrate


def test_the_demo_finds_real_birds(kafka_settings: Settings, db_settings: Settings,
                                   birdnet_bundle: Path) -> None:
    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres,
                                                 "state_dir": birdnet_bundle.parents[1]})
    migrate.upgrade(settings)
    assert birdnet_available() is None
    imported, found = run_birdnet_demo(settings, progress=False)
    assert imported.already_imported and imported.folder == birdnet_bundle
    assert found.chunks_stored == found.chunks_expected == 91
    best = {s.station: s.species[0]["common_name"] for s in found.stations if s.species}
    assert best["real-redpoll"] == "Lesser Redpoll"
    assert best["real-warblers"] == "Tennessee Warbler"
    assert best["real-frog"] == "Spring Peeper"
    colombia = next(s for s in found.stations if s.station == "real-colombia")
    assert "Madagascar Flufftail" in colombia.out_of_range


def test_the_demo_says_why_it_leaves_real_birds_out_without_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the extra were not installed
    why = birdnet_available()
    assert why is not None and "tf2onnx" in why
