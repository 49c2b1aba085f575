"""Shared fixtures: real Kafka and PostgreSQL for integration tests, started through the
same infra code that `soundscape infra up` uses, in a state folder of the test run's own.

Tests under tests/integration are marked `integration` automatically; the rest `unit`.
`pytest -m unit` runs without any service.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundscape.settings import Settings, default_state_dir

ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        is_integration = Path(str(item.fspath)).is_relative_to(ROOT / "integration")
        item.add_marker(pytest.mark.integration if is_integration else pytest.mark.unit)


@pytest.fixture(scope="session")
def run_state_dir() -> Iterator[Path]:
    """A state folder for this test run; the jar cache is shared across runs."""
    base = Path(os.environ.get("SOUNDSCAPE_TEST_STATE_ROOT") or default_state_dir())
    path = base / "test-runs" / uuid.uuid4().hex[:10]
    path.mkdir(parents=True)
    os.environ.setdefault("SOUNDSCAPE_CACHE_DIR", str(base / "cache"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def services(run_state_dir: Path) -> Iterator[Settings]:
    """Kafka and PostgreSQL running for the whole session, stopped at the end."""
    from soundscape.infra import stack

    settings = Settings(state_dir=run_state_dir)
    report = stack.up(settings)
    print(f"\nservices up: {report}")
    try:
        yield settings
    finally:
        stack.down(settings)


@pytest.fixture
def kafka_settings(services: Settings) -> Iterator[Settings]:
    """Settings whose topics are this test's own (created here, deleted after)."""
    from soundscape.infra.kafka.topics import delete_topics, ensure_topics

    suffix = uuid.uuid4().hex[:8]
    defaults = services.topics
    topics = defaults.model_copy(
        update={name: f"{getattr(defaults, name)}.t{suffix}" for name in
                ("audio", "detections", "audio_dlq", "heartbeats", "drift", "results_dlq")}
        | {"partitions": 3}
    )
    settings = services.model_copy(update={"topics": topics})
    ensure_topics(settings)
    yield settings
    delete_topics(settings, topics.all_names())


@pytest.fixture
def db_settings(services: Settings) -> Iterator[Settings]:
    """Settings pointing at a fresh database of this test's own (dropped after)."""
    from psycopg import sql

    from soundscape.infra.postgres.cluster import PostgresCluster

    name = f"t_{uuid.uuid4().hex[:10]}"
    settings = services.model_copy(
        update={"postgres": services.postgres.model_copy(update={"database": name})}
    )
    cluster = PostgresCluster(settings)
    with cluster.superuser_connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(settings.postgres.writer_user)
            )
        )
    cluster.grant_read_only(name)
    yield settings
    with cluster.superuser_connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
