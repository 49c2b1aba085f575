"""Scale-out mid-stream: a worker joins and another leaves while chunks flow.

With cooperative rebalancing (kafka.assignment_strategy=cooperative-sticky, opt-in) the
member already working gives up only the partitions the newcomer takes and goes on
scoring the others; the eager protocols revoke everything from everyone. Either way
nothing may be lost or scored twice.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from soundscape.chunk_publisher import ChunkPublisher
from soundscape.messages import Detection, parse
from soundscape.settings import Settings
from soundscape.synthetic.chunks import generated_chunks

from test_worker import START_NS, health, read_all, start_worker, worker_env


def _revocations(log: Path) -> list[list[int]]:
    revoked = []
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "partitions revoked":
            revoked.append(list(event["partitions"]))
    return revoked


def _wait(condition, what: str, logs: list[Path], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}:\n" + "\n".join(p.read_text()[-2500:] for p in logs))


def test_a_worker_joining_and_one_leaving_mid_stream_lose_and_repeat_nothing(
    kafka_settings: Settings, bundle: Path, tmp_path: Path
) -> None:
    count, stations = 120, 6
    env = worker_env(kafka_settings, bundle) | {
        "SOUNDSCAPE_KAFKA__ASSIGNMENT_STRATEGY": os.environ.get(
            "SOUNDSCAPE_KAFKA__ASSIGNMENT_STRATEGY", "cooperative-sticky")}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first, port_a = start_worker(env, "w-a", logs[0])
    second = None
    sent: set[str] = set()

    def publish_slowly() -> None:  # about 25 s of stream, so both changes land mid-stream
        publisher = ChunkPublisher(kafka_settings)
        for envelope, payload in generated_chunks(count, stations, START_NS):
            sent.add(str(publisher.publish(envelope, payload).chunk_id))
            publisher.flush()
            time.sleep(0.2)

    publisher = threading.Thread(target=publish_slowly)
    try:
        _wait(lambda: len(health(port_a).get("partitions", [])) == 3, "w-a took no partitions",
              logs)
        publisher.start()
        _wait(lambda: health(port_a).get("batches", 0) >= 2, "w-a did not score", logs)
        second, port_b = start_worker(env, "w-b", logs[1])
        _wait(lambda: health(port_b).get("partitions") and health(port_b).get("batches", 0) >= 1,
              "w-b never scored", logs)
        held_by_a = health(port_a).get("partitions", [])
        assert held_by_a and len(held_by_a) < 3, f"w-a holds {held_by_a} after w-b joined"
        assert publisher.is_alive(), "the stream ended before w-b joined: nothing mid-stream"
        first.send_signal(signal.SIGTERM)  # leaves the group: w-b takes its partitions
        assert first.wait(60) == 0
        publisher.join(120)
        _wait(lambda: len(health(port_b).get("partitions", [])) == 3,
              "w-b did not take w-a's partitions", logs)
        messages = read_all(kafka_settings, kafka_settings.topics.detections, count,
                            timeout_s=240)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    results = [parse(Detection, m.value()) for m in messages]
    ids = Counter(str(r.chunk_id) for r in results)
    assert not {cid for cid, n in ids.items() if n > 1}, "chunks scored twice"
    assert set(ids) == sent and len(sent) == count
    assert set(Counter(r.worker_id for r in results)) == {"w-a", "w-b"}
    # Cooperative: when w-b joined, w-a gave up only what w-b took, never all three.
    revoked = _revocations(logs[0])
    assert revoked, "w-a logged no revocation"
    assert len(revoked[0]) < 3, f"w-a's first revocation took everything: {revoked}"
