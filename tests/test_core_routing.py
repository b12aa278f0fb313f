"""`Router`: each sink gets the events its route selects; a source position is acked only when every receiver acked."""

from __future__ import annotations

from streamflow.connectors.memory import MemorySink
from streamflow.core.acks import AckTracker
from streamflow.core.batch import Batch
from streamflow.core.channel import Channel
from streamflow.core.message import Message
from streamflow.core.pipeline import SinkRoute
from streamflow.core.routing import Router


async def route(routes: list[SinkRoute], *batches: Batch) -> list[list[Batch]]:
    """Run the router over ``batches``; what each sink channel received, in order."""
    inp = Channel("->route", max_batches=len(batches))  # filled before the router runs
    outs = [Channel(f"->{r.sink.name}", max_batches=len(batches)) for r in routes]
    for batch in batches:
        await inp.put(batch)
    inp.close()
    await Router(routes, outs).run(inp)
    received: list[list[Batch]] = []
    for ch in outs:
        assert ch.closed
        got: list[Batch] = []
        while (b := await ch.get()) is not None:
            got.append(b)
        received.append(got)
    return received


def values(batches: list[Batch]) -> list[object]:
    return [m.value for b in batches for m in b.messages]


async def test_predicates_select_events_and_acks_wait_for_every_receiver() -> None:
    tracker = AckTracker()
    routes = [SinkRoute(MemorySink(name="all")), SinkRoute(MemorySink(name="even"), lambda v: v % 2 == 0),
              SinkRoute(MemorySink(name="big"), lambda v: v > 100)]
    batch = Batch([Message(v) for v in range(6)], [tracker.track(0, 6)])
    every, even, big = await route(routes, batch)
    assert values(every) == list(range(6)) and values(even) == [0, 2, 4] and big == []
    every[0].ack()
    assert tracker.watermark(0) is None  # the "even" sink has not acked yet
    even[0].ack()
    assert tracker.watermark(0) == 6


async def test_a_batch_no_route_selects_is_acked_at_once() -> None:
    tracker = AckTracker()
    routes = [SinkRoute(MemorySink(name="neg"), lambda v: v < 0)]
    received = await route(routes, Batch([Message(1), Message(2)], [tracker.track(0, 2)]))
    assert received == [[]] and tracker.watermark(0) == 2


async def test_one_unconditional_sink_gets_the_batches_themselves_in_order() -> None:
    first, second = Batch([Message(1)]), Batch([Message(2)])
    [received] = await route([SinkRoute(MemorySink())], first, second)
    assert received[0] is first and received[1] is second
