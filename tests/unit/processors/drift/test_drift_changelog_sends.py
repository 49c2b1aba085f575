"""The drift app's commit waits for the table changes still in faust's producer buffer
(no Kafka: faust's buffer with a recording send in place of the producer)."""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

from soundscape.processors.drift.stream import ChangelogSends


def test_flush_sends_every_buffered_change_and_waits_for_the_one_in_flight() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []
        release = asyncio.Event()

        async def send(message: str) -> None:
            if message == "first":  # the background task's, slow to reach the producer
                await release.wait()
            sent.append(message)

        buffer = ProducerBuffer()
        buffer._send_pending = send  # type: ignore[method-assign]
        sends = ChangelogSends(buffer)
        in_flight = asyncio.create_task(sends.send("first"))
        await asyncio.sleep(0)
        for message in ("second", "third"):
            buffer.pending.put_nowait(message)
        flushed = asyncio.create_task(sends.flush())
        await asyncio.sleep(0.05)
        assert not flushed.done(), "flush returned with a change still on its way"
        release.set()
        await asyncio.wait_for(flushed, 1)
        await in_flight
        assert buffer.pending.empty()
        return sent

    assert sorted(asyncio.run(scenario())) == ["first", "second", "third"]


def test_flush_of_an_empty_buffer_returns_at_once() -> None:
    async def scenario() -> None:
        async def send(message: str) -> None:
            raise AssertionError("nothing to send")

        buffer = ProducerBuffer()
        buffer._send_pending = send  # type: ignore[method-assign]
        await asyncio.wait_for(ChangelogSends(buffer).flush(), 1)

    asyncio.run(scenario())
