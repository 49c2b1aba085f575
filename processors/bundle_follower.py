"""Following the registry: a worker switches to the promoted bundle without a restart.

A thread reads the registry's active version every `worker.registry_poll_s`; a new
version is loaded and checked on that thread (the worker keeps scoring meanwhile), and
handed over through `take()`, which the worker calls between batches: a batch is always
scored by one bundle, and every result names the version that scored it. A version
that cannot be loaded is reported (log, metric, health) and the worker keeps the
bundle it has; it is tried again once the active version changes or after
`RETRY_FAILED_S`. The registry being unreachable changes nothing either.

The registry and the loader come in as callables, so this room needs neither the
sinks room (the registry) nor model details.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundscape.logs import get_logger
from soundscape.processors import worker_metrics as metrics
from soundscape.processors.scoring import ModelScorer

log = get_logger(__name__)

#: A version that failed to load is tried again after this long (files may be fixed).
RETRY_FAILED_S = 300.0


@dataclass(frozen=True)
class Wanted:
    """The registry's active version and where its files are."""

    version: str
    location: str | None


class BundleFollower:
    def __init__(self, active: Callable[[], Wanted | None],
                 load: Callable[[Path], ModelScorer], current: str, poll_s: float) -> None:
        self._active = active
        self._load = load
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._current = current
        self._ready: ModelScorer | None = None
        self._failed: tuple[str, float, str] | None = None  # version, when, why
        self._registry_error: str | None = None
        self._wanted: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the worker's side -------------------------------------------------------------
    def take(self) -> ModelScorer | None:
        """The newly loaded bundle, once; None when there is nothing new."""
        with self._lock:
            ready, self._ready = self._ready, None
            if ready is not None:
                self._current = ready.version
            return ready

    def health(self) -> dict[str, Any]:
        with self._lock:
            failed = self._failed
            return {"following": "registry", "active": self._wanted,
                    "bundle_error": None if failed is None else f"{failed[0]}: {failed[2]}",
                    "registry_error": self._registry_error}

    # ---- the thread --------------------------------------------------------------------
    def start(self) -> BundleFollower:
        self._thread = threading.Thread(target=self._run, name="bundle-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.check()

    def check(self) -> None:
        """One look at the registry; loads the active version when it is new."""
        try:
            wanted = self._active()
        except Exception as exc:  # noqa: BLE001 - the registry down changes nothing here
            with self._lock:
                if self._registry_error is None:
                    log.warning("registry unreachable; keeping the current bundle",
                                error=str(exc).strip()[:200])
                self._registry_error = str(exc).strip()[:200]
            return
        with self._lock:
            self._registry_error = None
            self._wanted = wanted.version if wanted else None
            if wanted is None or wanted.version == self._current:
                self._ready = None  # rolled back before the worker took it
                return
            if self._ready is not None and self._ready.version == wanted.version:
                return
            failed = self._failed
        if failed is not None and failed[0] == wanted.version \
                and time.monotonic() - failed[1] < RETRY_FAILED_S:
            return
        scorer = self._try_load(wanted)
        with self._lock:
            if scorer is not None:
                self._ready, self._failed = scorer, None
                log.info("promoted bundle loaded; switching at the next batch",
                         version=wanted.version, previous=self._current)

    def _try_load(self, wanted: Wanted) -> ModelScorer | None:
        why = None
        if not wanted.location:
            why = "the registry has no location for it"
        else:
            try:
                scorer = self._load(Path(wanted.location))
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old bundle
                why = f"{type(exc).__name__}: {exc}"
            else:
                if scorer.version == wanted.version:
                    return scorer
                why = f"the files at {wanted.location} are version {scorer.version}"
        metrics.BUNDLE_LOAD_FAILURES.inc()
        log.error("cannot load the promoted bundle; keeping the current one",
                  version=wanted.version, location=wanted.location, error=why[:300])
        with self._lock:
            self._failed = (wanted.version, time.monotonic(), why[:300])
        return None
