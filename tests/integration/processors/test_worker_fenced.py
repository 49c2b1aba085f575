"""A worker whose consumer is fenced for good (another member joined with its
group.instance.id) stops with an error, so it is started again with a new consumer,
instead of logging the error for minutes while its partitions stand still (seen in a
chaos run after a broker kill)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer

from soundscape.errors import ServiceError
from soundscape.kafka_clients import consumer_config
from soundscape.processors.scoring import ModelScorer
from soundscape.processors.worker import InferenceWorker
from soundscape.settings import Settings
from soundscape.stall_dump import StallDump


class _CountingDump(StallDump):
    """The worker's loop arms the stall dump each turn and disarms it however it ends."""

    def __init__(self) -> None:
        super().__init__(0)
        self.turns = self.stops = 0

    def turn(self) -> None:
        self.turns += 1

    def stop(self) -> None:
        self.stops += 1


def test_a_fenced_worker_stops_instead_of_standing_still(kafka_settings: Settings,
                                                         bundle: Path) -> None:
    topic = kafka_settings.topics.audio
    settings = kafka_settings.model_copy(update={
        "kafka": kafka_settings.kafka.model_copy(update={"instance_id": f"fence-{topic}"}),
        "worker": kafka_settings.worker.model_copy(update={"group_id": f"fence-{topic}"})})
    worker = InferenceWorker(settings, ModelScorer.load(bundle, settings), worker_id="fenced")
    worker.stall_dump = dump = _CountingDump()
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not worker.health()["partitions"]:
        assert time.monotonic() < deadline, "the worker never got its partitions"
        time.sleep(0.2)

    intruder = Consumer(consumer_config(settings, settings.worker.group_id))  # same instance id
    try:
        intruder.subscribe([topic])
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            intruder.poll(0.2)
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the fenced worker went on"
        assert failures and isinstance(failures[0], ServiceError), failures
        assert "failed for good" in str(failures[0])
        assert dump.turns > 0 and dump.stops == 1  # disarmed although the loop raised
    finally:
        stop.set()
        intruder.close()
