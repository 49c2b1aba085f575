"""Pure parts of the sink: identity checks, offsets to commit, dead-letter headers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soundscape.envelope import chunk_id_for
from soundscape.messages import MessageError
from soundscape.sinks.dead_letters import MAX_REASON_CHARS, dead_letter_headers
from soundscape.sinks.sample_results import detection, drift_report, heartbeat
from soundscape.sinks.service import (
    InFlight,
    Record,
    check_identity,
    derived_chunk_id_bytes,
    to_batch,
)


class FakeMessage:
    """Stands in for confluent_kafka.Message, which cannot be built in Python."""

    def __init__(self, topic: str, partition: int, offset: int, headers: Any = None) -> None:
        self._t, self._p, self._o, self._h = topic, partition, offset, headers

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def headers(self) -> Any:
        return self._h


@given(st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True), st.integers(0, 2**63 - 1))
def test_fast_chunk_id_equals_the_envelope_derivation(station: str, start: int) -> None:
    assert derived_chunk_id_bytes(station, start) == chunk_id_for(station, start).bytes


def test_a_detection_with_a_foreign_chunk_id_is_refused() -> None:
    good = detection("st-1", 10**18)
    check_identity(good)
    bad = good.model_copy(update={"chunk_id": uuid.uuid4()})
    with pytest.raises(MessageError, match="is not the id of st-1/"):
        check_identity(bad)
    check_identity(heartbeat("st-1", 1))  # other kinds carry no chunk id


def test_offsets_to_commit_are_one_past_the_last_message_per_partition() -> None:
    inflight = InFlight()
    assert inflight.empty
    for topic, partition, offset in [("d", 0, 5), ("d", 0, 6), ("d", 1, 3), ("h", 0, 9)]:
        inflight.note(FakeMessage(topic, partition, offset))  # type: ignore[arg-type]
    assert not inflight.empty and inflight.started > 0
    assert [(tp.topic, tp.partition, tp.offset) for tp in inflight.commit_list()] == [
        ("d", 0, 7), ("d", 1, 4), ("h", 0, 10),
    ]


def test_records_are_grouped_by_kind_for_the_writer() -> None:
    source = FakeMessage("t", 0, 0)
    records = [Record(m, source) for m in (detection("a", 0), heartbeat("a", 1),  # type: ignore[arg-type]
                                           drift_report("a", 2), detection("b", 0))]
    batch = to_batch(records)
    assert len(batch) == 4
    assert [d.station_id for d in batch.detections] == ["a", "b"]
    assert len(batch.heartbeats) == len(batch.drift) == 1


def test_dead_letter_headers_keep_the_original_and_add_the_reason() -> None:
    msg = FakeMessage("soundscape.detections.v1", 2, 41, headers=[("trace", b"abc")])
    headers = dict(dead_letter_headers(msg, "x" * 5000, "sink/g"))  # type: ignore[arg-type]
    assert headers["trace"] == b"abc"
    assert headers["dlq_source_topic"] == b"soundscape.detections.v1"
    assert headers["dlq_source_partition"] == b"2" and headers["dlq_source_offset"] == b"41"
    assert headers["dlq_rejected_by"] == b"sink/g"
    assert len(headers["dlq_reason"]) == MAX_REASON_CHARS
    assert int(headers["dlq_rejected_at"]) > 0
