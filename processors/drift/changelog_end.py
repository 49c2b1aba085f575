"""Where a table's changelog really ends, so restoring it stops there and not 10 s later.

faust 0.15 restores a table partition until it has applied the record at the partition's
highwater - 1. With exactly_once every transaction ends with a commit marker in each
partition it wrote, so the last offset of a changelog partition is a marker, and a
read_committed consumer never receives it. faust then waits for two empty 5 s polls
("Aborted tx until highwater") before it counts the partition as read: 10 s of every
restart of the drift app.

Cutting that wait is not safe: records already fetched may still be on their way to the
recovery queue (a shorter wait once lost a station's state). So instead the goal is made
reachable: before restoring, `last_data_offsets` reads the tail of each changelog partition
with a read_committed consumer of its own up to the end librdkafka reports (its
partition EOF, which comes after control records), and the highwater becomes the offset
of the last committed data record. faust then stops as soon as it has applied that
record, exactly the state the changelog holds. When the probe cannot answer in time,
faust's own highwaters stand (slow, but safe).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from soundscape.logs import get_logger

log = get_logger(__name__)

#: Offsets read back from the end first; widened 16-fold while a window holds no data.
FIRST_WINDOW = 64
WIDEN = 16

Partition = tuple[str, int]
#: Errors of a partition whose leader is not known yet (a broker just restarted).
RETRIED_CODES = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
                 KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError._TRANSPORT, KafkaError._TIMED_OUT)


def last_data_offsets(config: Mapping[str, Any], ends: Mapping[Partition, int],
                      timeout_s: float = 20.0) -> dict[Partition, int]:
    """For each (topic, partition): the offset of its last committed data record below
    `ends[tp]` (an exclusive end offset), or the log start - 1 when it holds none.

    `config` is a consumer configuration (servers, security); isolation is forced to
    read_committed. Raises TimeoutError when the answer is not known within `timeout_s`.
    """
    consumer = Consumer({**config, "group.id": config.get("group.id", "soundscape-changelog-probe"),
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "enable.partition.eof": True, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 50})
    deadline = time.monotonic() + timeout_s
    try:
        found: dict[Partition, int] = {}
        starts: dict[Partition, int] = {}
        pending: dict[Partition, int] = {}  # partition -> exclusive end still to search
        window = FIRST_WINDOW
        for tp, end in ends.items():
            low = _log_start(consumer, tp, deadline)
            starts[tp] = low
            if end <= low:
                found[tp] = low - 1
            else:
                pending[tp] = end
        while pending:
            begins = {tp: max(starts[tp], end - window) for tp, end in pending.items()}
            last = _read_to_eof(consumer, begins, pending, deadline)
            for tp in list(pending):
                if tp in last:
                    found[tp] = last[tp]
                elif begins[tp] <= starts[tp]:
                    found[tp] = starts[tp] - 1
                else:
                    pending[tp] = begins[tp]  # nothing after this: look further back
                    continue
                del pending[tp]
            window *= WIDEN
        return found
    finally:
        consumer.close()


def _log_start(consumer: Consumer, tp: Partition, deadline: float) -> int:
    """The partition's first offset; retried while its leader is unknown or moving (right
    after a broker restart librdkafka may not know the partition yet)."""
    while True:
        try:
            low, _ = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=_left(deadline))
            return int(low)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError) or not (
                    error.retriable() or error.code() in RETRIED_CODES):
                raise
            time.sleep(min(0.2, _left(deadline)))


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the changelog tails were not read in time")
    return left


def _read_to_eof(consumer: Consumer, begins: Mapping[Partition, int],
                 ends: Mapping[Partition, int], deadline: float) -> dict[Partition, int]:
    """The highest offset of a committed data record from each begin offset up to (not
    including) its end, for the partitions that have one; read until librdkafka reports
    EOF (the last stable offset) for every partition."""
    consumer.assign([TopicPartition(topic, partition, offset)
                     for (topic, partition), offset in begins.items()])
    seen: dict[Partition, int] = {}
    open_ = set(begins)
    while open_:
        for message in consumer.consume(500, timeout=min(0.5, _left(deadline))):
            tp = (message.topic(), message.partition())
            error = message.error()
            if error is None:
                if message.offset() < ends[tp]:
                    seen[tp] = max(seen.get(tp, -1), message.offset())
            elif error.code() == KafkaError._PARTITION_EOF:
                open_.discard(tp)
            elif error.fatal() or not error.retriable():
                raise RuntimeError(f"reading {tp[0]}[{tp[1]}]: {error.str()}")
    consumer.unassign()
    return seen


class MarkerAwareRecovery(Recovery):
    """faust's recovery with highwaters at the last committed data record (see above).

    A partition whose table already holds a later offset than the lowered one (persisted in
    RocksDB by an app killed before its transaction committed, whose records were then
    aborted) keeps faust's own highwater: below that offset, faust's consistency check
    would stop the app ("persisted offset ... is higher than the last offset"). (The exits
    with that message seen in chaos runs have another cause: faust's own highwater read
    returning nothing during a broker kill, -1 everywhere; the app is started again.)"""

    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Any,
                                title: str) -> None:
        self.lowered_highwaters: dict[Any, int] = {}
        await super()._build_highwaters(consumer, tps, destination, title)
        config = getattr(self.app, "changelog_probe_config", None)
        ends = {(tp.topic, tp.partition): highwater + 1
                for tp, highwater in destination.items() if highwater is not None and highwater >= 0}
        if config is None or not ends:
            return
        started = time.monotonic()
        timeout = float(self.app.conf.broker_request_timeout) / 2
        try:
            last = await asyncio.get_running_loop().run_in_executor(
                None, last_data_offsets, config, ends, timeout)
        except Exception as exc:  # noqa: BLE001 - any failure leaves faust's own (slow) goal
            log.warning("could not read where the changelogs end; restoring waits for "
                        "faust's own end check", error=str(exc), partitions=len(ends))
            return
        lowered = 0
        for (topic, partition), offset in last.items():
            tp = TP(topic, partition)
            if offset < destination[tp]:
                self.lowered_highwaters[tp] = destination[tp]
                destination[tp] = offset
                lowered += 1
        log.info("changelog ends read", title=title, partitions=len(ends),
                 ending_in_markers=lowered, seconds=round(time.monotonic() - started, 3))

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any,
                             title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if destination is self.active_offsets:
            keep_faust_highwater_where_state_is_ahead(
                destination, self.active_highwaters, getattr(self, "lowered_highwaters", {}))


def keep_faust_highwater_where_state_is_ahead(offsets: Any, highwaters: Any,
                                              lowered: dict[Any, int]) -> list[Any]:
    """Give back faust's own highwater to each lowered partition whose persisted offset is
    past the lowered one; returns those partitions."""
    restored = [tp for tp, original in lowered.items()
                if offsets.get(tp) is not None and offsets[tp] > highwaters.get(tp, -1)]
    for tp in restored:
        highwaters[tp] = lowered[tp]
    if restored:
        log.warning("the table's local state is past the committed changelog (a transaction "
                    "aborted after the app was killed); restoring those partitions waits "
                    "for faust's own end check", partitions=len(restored))
    return restored


class MarkerAwareTableManager(TableManager):
    """faust's table manager with `MarkerAwareRecovery` (passed as the app's TableManager)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = MarkerAwareRecovery(self.app, self, beacon=self.beacon,
                                                 loop=self.loop)
        return self._recovery
