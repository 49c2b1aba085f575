"""Workers, a sink and the clip keeper as threads of this process, for the demo and the
benchmarks that run the whole pipeline on one machine; stopped cleanly however the
block is left."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from soundscape.local_services import as_local_service
from soundscape.logs import get_logger
from soundscape.settings import Settings

log = get_logger(__name__)


@contextmanager
def running_pipeline(settings: Settings, scorers: Sequence[Any], name: str) -> Iterator[list[Any]]:
    """Start one worker per scorer (ids `<name>-1`, ...) and the sink; yield the workers."""
    from soundscape.app.bundle_registration import register
    from soundscape.app.worker_cli import signature_check
    from soundscape.processors.worker import InferenceWorker
    from soundscape.sinks.service import SinkService

    # Registered the way an operator would (`models register`): the sink stores results
    # of registered bundles only.
    for scorer in scorers:
        register(settings, scorer.bundle)
    stop = threading.Event()
    # Each as its own principal where the local broker has no anonymous listener.
    sink = SinkService(as_local_service(settings, "sink"))
    signatures = signature_check(settings)
    as_worker = as_local_service(settings, "worker")
    pool = [InferenceWorker(as_worker, scorer, worker_id=f"{name}-{i + 1}",
                            signatures=signatures)
            for i, scorer in enumerate(scorers)]
    threads = [threading.Thread(target=w.run, args=(stop,), name=w.worker_id) for w in pool]
    threads.append(threading.Thread(target=sink.run, name="sink"))
    for thread in threads:
        thread.start()
    try:
        yield pool
    finally:
        stop.set()
        sink.request_stop()
        for thread in threads:
            thread.join(60)


@contextmanager
def running_clip_keeper(settings: Settings) -> Iterator[Any]:
    """The clip keeper in a thread (its principal where the broker needs one)."""
    from soundscape.sinks.clip_keeper import ClipKeeper

    keeper = ClipKeeper(as_local_service(settings, "clips"))
    thread = threading.Thread(target=keeper.run, name="clips")
    thread.start()
    try:
        yield keeper
    finally:
        keeper.request_stop()
        thread.join(60)


def wait_for_clips(keeper: Any, results: int, timeout_s: float) -> None:
    """Until the clip keeper has been through `results` more results (what it kept can
    then be opened in the web app); a keeper still behind at the deadline is logged."""
    deadline = time.monotonic() + timeout_s
    while keeper.stats.committed < results and time.monotonic() < deadline:
        time.sleep(0.2)
    if keeper.stats.committed < results:
        log.warning("the clip keeper is behind", seen=keeper.stats.committed, results=results)
