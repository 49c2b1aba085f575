"""A database of the session's own, filled once by `grafana demo-data` (four days of four
stations, through the sink's writer) and analysed, for the panel and report tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from grafana_testkit import DAYS, END, DemoDatabase
from psycopg import sql
from pydantic import SecretStr

from soundscape.app import demo_data
from soundscape.sinks import migrate


@pytest.fixture(scope="session")
def demo_db(backend: Any) -> Iterator[DemoDatabase]:
    from soundscape.infra.postgres.roles import grant_read_only

    base = backend.settings
    name = f"t_grafana_{uuid.uuid4().hex[:8]}"
    with backend.connect_admin("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(base.postgres.writer_user)))
    grant_read_only(backend.connect_admin, base, name)
    settings = base.model_copy(update={"postgres": base.postgres.model_copy(update={
        "database": name, "url": SecretStr(backend.url_for("writer", name)),
        "reader_url": SecretStr(backend.url_for("reader", name))})})
    migrate.upgrade(settings)
    summary = demo_data.fill(settings, END, DAYS * 24)
    with backend.connect_admin(name) as conn:
        conn.execute("ANALYZE")
    yield DemoDatabase(settings, name, backend.connect_admin, summary)
    with backend.connect_admin("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
