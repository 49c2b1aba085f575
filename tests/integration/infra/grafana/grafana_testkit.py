"""Shared names of the Grafana tests (a unique module name: test folders share sys.path;
the fixture itself is in this folder's conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from soundscape.app import demo_data
from soundscape.settings import Settings

#: The demo's "now": the dashboards' default ranges end here.
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS = 4


@dataclass
class DemoDatabase:
    settings: Settings
    name: str
    connect_admin: Callable[[str], Any]
    summary: demo_data.DemoSummary
