"""The changelog probe's log-start read: retried while a restarted broker's partitions are
unknown, not for other errors, and bounded by the deadline."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from soundscape.processors.drift.changelog_end import _log_start


class Watermarks:
    """get_watermark_offsets failing with `errors` first, then answering (5, 9)."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, tp, timeout):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 5, 9


def test_unknown_partitions_are_retried_until_known() -> None:
    consumer = Watermarks(KafkaError._UNKNOWN_PARTITION, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert _log_start(consumer, ("t", 0), time.monotonic() + 10) == 5  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_other_errors_are_raised_at_once() -> None:
    consumer = Watermarks(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        _log_start(consumer, ("t", 0), time.monotonic() + 10)  # type: ignore[arg-type]
    assert consumer.calls == 1


def test_the_deadline_bounds_the_retries() -> None:
    consumer = Watermarks(*[KafkaError._UNKNOWN_PARTITION] * 1000)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _log_start(consumer, ("t", 0), time.monotonic() + 0.5)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2


def test_a_table_past_the_committed_changelog_keeps_fausts_highwater() -> None:
    """Persisted offset 5 with the committed changelog ending at -1 (its records aborted):
    that partition gets its own highwater back, so faust's consistency check passes; a
    partition whose state is not ahead keeps the lowered one."""
    from soundscape.processors.drift.changelog_end import keep_faust_highwater_where_state_is_ahead

    offsets = {"p0": 5, "p1": 3, "p2": None}
    highwaters = {"p0": -1, "p1": 3, "p2": 7}
    lowered = {"p0": 6, "p1": 4, "p2": 8}
    assert keep_faust_highwater_where_state_is_ahead(offsets, highwaters, lowered) == ["p0"]
    assert highwaters == {"p0": 6, "p1": 3, "p2": 7}
    assert all(offsets[tp] is None or offsets[tp] <= highwaters[tp] for tp in offsets)
