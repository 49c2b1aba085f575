"""Shared fixtures: real Kafka and PostgreSQL for integration tests, started through the
project's own infra code, in a state folder of the test run's own.

Tests under tests/integration are marked `integration` automatically; the rest `unit`.
SOUNDSCAPE_TEST_BACKEND=containers runs the same tests against testcontainers (backends.py).
`pytest -m unit` runs without any service.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, drop_database, fresh_database, start_backend
from soundscape.settings import Settings, default_state_dir

ROOT = Path(__file__).resolve().parent

#: Where the tests live whose subject is the conversation with the brokers and the
#: database over the network: the compose stack, the Kafka round trip, the worker's
#: transactions, the sink room and the station's restarts. Marked `network` (unless
#: `local_only` or `browser`); `make test` runs them on the containers backend and the
#: rest on local processes, since the rest runs the same client code against the same
#: broker and server versions whichever backend serves it.
NETWORK_TESTS = tuple(ROOT / part for part in (
    "integration/infra/test_compose.py", "integration/app/test_kafka_roundtrip.py",
    "integration/processors/test_worker.py", "integration/sinks",
    "integration/producers/test_station_restarts.py"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        is_integration = path.is_relative_to(ROOT / "integration")
        item.add_marker(pytest.mark.integration if is_integration else pytest.mark.unit)
        if path.is_relative_to(ROOT / "integration" / "models" / "birdnet"):
            item.add_marker(pytest.mark.birdnet)
        if (any(path.is_relative_to(place) for place in NETWORK_TESTS)
                and item.get_closest_marker("local_only") is None
                and item.get_closest_marker("browser") is None):
            item.add_marker(pytest.mark.network)


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
def backend(run_state_dir: Path) -> Iterator[Backend]:
    """Kafka and PostgreSQL for the whole session (local processes or containers)."""
    with start_backend(run_state_dir) as running:
        yield running


@pytest.fixture(scope="session")
def services(backend: Backend) -> Settings:
    """Settings that reach the session's Kafka and PostgreSQL."""
    return backend.settings


@pytest.fixture
def kafka_settings(services: Settings) -> Iterator[Settings]:
    """Settings whose topics are this test's own (created here, deleted after)."""
    from soundscape.kafka_topics import TOPIC_FIELDS, delete_topics, ensure_topics

    suffix = uuid.uuid4().hex[:8]
    defaults = services.topics
    topics = defaults.model_copy(
        update={name: f"{getattr(defaults, name)}.t{suffix}" for name in
                TOPIC_FIELDS}
        | {"partitions": 3}
    )
    settings = services.model_copy(update={"topics": topics})
    ensure_topics(settings)
    yield settings
    delete_topics(settings, topics.all_names())


@pytest.fixture
def db_settings(backend: Backend) -> Iterator[Settings]:
    """Settings pointing at a fresh database of this test's own (dropped after)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield fresh_database(backend, name)
    drop_database(backend, name)


@pytest.fixture(scope="session")
def labelled_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labelled_audio's manifest (real recordings and synthetic WAV files), once a session."""
    from labelled_audio import REAL_AUDIO, real_audio_present, write_manifest

    assert real_audio_present(), f"{REAL_AUDIO}: the project's real recordings are missing"
    return write_manifest(tmp_path_factory.mktemp("recordings"))


@pytest.fixture(scope="session")
def small_trained_bundle(labelled_manifest: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`models train` on that manifest (one epoch, seed 3, the manifest's labels), once a
    session: the training tests read it, the rollout test promotes it. (bundle, output)"""
    from labelled_audio import train_small

    out = tmp_path_factory.mktemp("trained") / "bundle"
    return out, train_small(labelled_manifest, out)


@pytest.fixture
def own_broker(run_state_dir: Path) -> Iterator[tuple[Settings, object]]:
    """A broker of this test's own, to stop and start; its default topics, 3 partitions."""
    from soundscape.infra.kafka.broker import KafkaBroker
    from soundscape.kafka_topics import ensure_topics

    settings = Settings(state_dir=run_state_dir / f"own-broker-{uuid.uuid4().hex[:6]}")
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"partitions": 3}),
                "kafka": settings.kafka.model_copy(update={"heap": "512m"})}
    )
    broker = KafkaBroker(settings)
    broker.start()
    try:
        ensure_topics(settings)
        yield settings, broker
    finally:
        broker.stop()
