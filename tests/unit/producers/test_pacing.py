"""The replay pacer: 0 never waits, N lets audio through at N x real time, stop wakes it."""

from __future__ import annotations

import threading
import time

import pytest

from soundscape.producers.pacing import Pacer


def test_speed_zero_never_waits() -> None:
    pacer = Pacer(0)
    started = time.monotonic()
    for i in range(1000):
        pacer.wait(i * 10.0)
    assert time.monotonic() - started < 0.5


def test_speed_n_releases_audio_at_n_times_real_time() -> None:
    pacer = Pacer(100.0)
    started = time.monotonic()
    pacer.wait(20.0)  # 20 s of audio at 100x: due 0.2 s after the pacer was made
    elapsed = time.monotonic() - started
    assert 0.18 <= elapsed < 1.0
    again = time.monotonic()
    pacer.wait(10.0)  # already due: no wait
    assert time.monotonic() - again < 0.05


def test_stop_cuts_a_long_wait_short() -> None:
    stop = threading.Event()
    pacer = Pacer(1.0, stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    pacer.wait(3600.0)
    assert time.monotonic() - started < 2.0


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        Pacer(-1)
