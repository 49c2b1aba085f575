"""What makes a restarted drift app quick to process again: faust's table recovery waits
RECOVERY_POLL_S, not 5 s, for the next changelog record (no Kafka: faust's own module)."""

from __future__ import annotations

import asyncio
import time

import faust.tables.recovery as recovery
import pytest

from soundscape.processors.drift.stream import RECOVERY_POLL_S, shorten_recovery_wait


def test_recovery_waits_for_the_next_changelog_record_at_most_the_short_poll() -> None:
    shorten_recovery_wait()

    async def empty_wait() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await recovery.asyncio.wait_for(queue.get(), timeout=5.0)  # faust's literal
        return time.monotonic() - started

    waited = asyncio.run(empty_wait())
    assert RECOVERY_POLL_S - 0.05 <= waited < 2.0


def test_recovery_keeps_the_rest_of_asyncio_and_longer_waits_still_deliver() -> None:
    shorten_recovery_wait()
    assert recovery.asyncio.sleep is asyncio.sleep
    assert recovery.asyncio.TimeoutError is asyncio.TimeoutError

    async def delivered() -> int:
        queue: asyncio.Queue[int] = asyncio.Queue()
        asyncio.get_running_loop().call_later(0.05, queue.put_nowait, 7)
        return await recovery.asyncio.wait_for(queue.get(), timeout=5.0)

    assert asyncio.run(delivered()) == 7
