"""Rate control for audio that is not captured live: as fast as possible or N x real time."""

from __future__ import annotations

import threading
import time


class Pacer:
    """`speed` 0 never waits; N lets `seconds` of audio pass in seconds / N of wall time."""

    def __init__(self, speed: float, stop: threading.Event | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._stop = stop or threading.Event()
        self._started = time.monotonic()

    def wait(self, audio_seconds: float) -> None:
        """Sleep until `audio_seconds` of audio may have been delivered (or stop is set)."""
        if self.speed == 0:
            return
        due = self._started + audio_seconds / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
