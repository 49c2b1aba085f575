"""Shared by the worker tests: the bundle they score with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SOUNDSCAPE_TEST_BUNDLE if set, else the committed demo bundle, else a small-profile
    bundle exported here with random weights (these tests check delivery, not species)."""
    if os.environ.get("SOUNDSCAPE_TEST_BUNDLE"):
        return Path(os.environ["SOUNDSCAPE_TEST_BUNDLE"])
    try:
        from soundscape.models import DEMO_BUNDLE

        if (DEMO_BUNDLE / "bundle.json").is_file():
            return Path(DEMO_BUNDLE)
    except ImportError:
        pass
    root = tmp_path_factory.mktemp("bundle")
    run = [sys.executable, "-m", "soundscape"]
    subprocess.run([*run, "frontend", "build", "--out", str(root / "frontend.onnx")], check=True,
                   capture_output=True)
    subprocess.run([*run, "models", "export", str(root / "small"), "--profile", "small",
                    "--classes", "6", "--random", "--frontend", str(root / "frontend.onnx")],
                   check=True, capture_output=True)
    return root / "small"
