"""Workers and a sink as threads of this process, for the demo and the benchmarks that
run the whole pipeline on one machine; stopped cleanly however the block is left."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from soundscape.local_services import as_local_service
from soundscape.settings import Settings


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
