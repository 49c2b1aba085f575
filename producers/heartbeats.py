"""Station heartbeats on soundscape.heartbeats.v1: health every `heartbeat_interval_s`.

Heartbeats are not spooled: each one describes the station now, so one that cannot be
delivered within a few intervals is dropped by the client, and the next one (sent once
the broker is back) tells the whole story: spool depth, oldest spooled chunk, gaps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Producer

from soundscape.kafka_clients import producer_config
from soundscape.logs import get_logger
from soundscape.messages import Heartbeat
from soundscape.producers.delivery import BrokerWatch
from soundscape.settings import Settings

log = get_logger(__name__)


class HeartbeatSender:
    def __init__(self, settings: Settings, make: Callable[[], Heartbeat]) -> None:
        self.interval_s = settings.station.heartbeat_interval_s
        self.topic = settings.topics.heartbeats
        self.sent = 0
        self.delivered = 0
        self._make = make
        self._watch = BrokerWatch("heartbeats")
        timeout_ms = int(max(60.0, self.interval_s * 5) * 1000)
        self._producer = Producer(
            producer_config(settings, **{"message.timeout.ms": timeout_ms,
                                         "error_cb": self._watch.on_error})
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def start(self) -> HeartbeatSender:
        self._thread.start()
        return self

    def send_now(self) -> Heartbeat:
        beat = self._make()
        self._producer.produce(self.topic, key=beat.station_id.encode(), value=beat.to_bytes(),
                               on_delivery=self._on_delivery)
        self.sent += 1
        self._producer.poll(0)
        return beat

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is None:
            self.delivered += 1
            self._watch.acked()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_now()
            except Exception:  # noqa: BLE001 - a failed heartbeat must not stop the station
                log.exception("heartbeat not sent")
            self._stop.wait(self.interval_s)
            self._producer.poll(0)

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Send a last heartbeat (the final state) and give it a moment to be delivered."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.send_now()
        except Exception:  # noqa: BLE001
            log.exception("last heartbeat not sent")
        self._producer.flush(flush_timeout_s)
