"""Fixtures of the sink's integration tests: a migrated database of the test's own, a
publisher of result messages, and the sink service run in a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sink_testkit import ResultPublisher, RunningSink, quick_sink

from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.sample_results import register_sample_bundle
from soundscape.sinks.service import SinkService


@pytest.fixture
def results_db(db_settings: Settings) -> Settings:
    """The test's own database, migrated to the newest schema, the sample results'
    bundle registered."""
    migrate.upgrade(db_settings)
    register_sample_bundle(db_settings)
    return db_settings


@pytest.fixture
def sink_settings(kafka_settings: Settings, results_db: Settings) -> Settings:
    """The test's own topics and database together."""
    return quick_sink(kafka_settings.model_copy(update={"postgres": results_db.postgres}))


@pytest.fixture
def publisher(sink_settings: Settings) -> ResultPublisher:
    return ResultPublisher(sink_settings)


@pytest.fixture
def start_sink() -> Iterator[Callable[..., RunningSink]]:
    """Start SinkService threads; any still running at the end are stopped."""
    running: list[RunningSink] = []

    def start(settings: Settings, **kwargs: Any) -> RunningSink:
        sink = RunningSink(SinkService(settings, **kwargs))
        running.append(sink)
        return sink

    yield start
    for sink in running:
        if sink.thread.is_alive():
            sink.service.request_stop()
            sink.thread.join(30)
