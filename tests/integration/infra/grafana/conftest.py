"""A database of the session's own, filled once by `grafana demo-data` (four days of four
stations, through the sink's writer) and analysed, for the panel and report tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from backends import drop_database, fresh_database
from grafana_testkit import DAYS, END, DemoDatabase

from soundscape.app import demo_data
from soundscape.sinks import migrate


@pytest.fixture(scope="session")
def demo_db(backend: Any) -> Iterator[DemoDatabase]:
    name = f"t_grafana_{uuid.uuid4().hex[:8]}"
    settings = fresh_database(backend, name)
    migrate.upgrade(settings)
    summary = demo_data.fill(settings, END, DAYS * 24)
    with backend.connect_admin(name) as conn:
        conn.execute("ANALYZE")
    yield DemoDatabase(settings, name, backend.connect_admin, summary)
    drop_database(backend, name)
