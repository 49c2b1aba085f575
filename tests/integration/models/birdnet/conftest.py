"""BirdNET imported once per test session (about 90 s: TensorFlow loads, two models
convert, 169 real windows are scored by both runtimes), in the run's own state folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundscape.models.birdnet.importer import ImportReport, import_birdnet

REAL = Path(__file__).resolve().parents[3] / "data" / "real"


@pytest.fixture(scope="session")
def birdnet_import(run_state_dir: Path) -> ImportReport:
    return import_birdnet(run_state_dir / "bundles", progress=print)


@pytest.fixture(scope="session")
def birdnet_bundle(birdnet_import: ImportReport) -> Path:
    return birdnet_import.folder
