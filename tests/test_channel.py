"""Contract 1: channels are bounded by batches and by events."""

from __future__ import annotations

import asyncio

import pytest

from streamflow.core.batch import Batch
from streamflow.core.channel import Channel
from streamflow.core.message import Message


def batch(n: int) -> Batch:
    return Batch([Message(i) for i in range(n)])


async def test_put_waits_when_batches_full() -> None:
    ch = Channel("c", max_batches=2, max_events=1000)
    await ch.put(batch(1))
    await ch.put(batch(1))
    blocked = asyncio.create_task(ch.put(batch(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert ch.depth == 2
    await ch.get()
    await asyncio.wait_for(blocked, 1)
    assert ch.depth == 2
    assert ch.peak_batches == 2


async def test_put_waits_when_events_full_but_oversized_batch_fits_empty_channel() -> None:
    ch = Channel("c", max_batches=10, max_events=5)
    await ch.put(batch(50))  # empty channel accepts one oversized batch
    blocked = asyncio.create_task(ch.put(batch(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert (await ch.get()) is not None
    await asyncio.wait_for(blocked, 1)
    assert ch.events == 1


async def test_close_ends_stream_after_queued_batches() -> None:
    ch = Channel("c")
    await ch.put(batch(2))
    ch.close()
    first = await ch.get()
    assert first is not None and len(first) == 2
    assert await ch.get() is None
    with pytest.raises(RuntimeError):
        await ch.put(batch(1))


def test_capacities_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Channel("c", max_batches=0)
