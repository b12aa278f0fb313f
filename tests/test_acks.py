"""Contract 2: the released checkpoint never passes an unacked position and reaches the end."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.core.acks import AckTracker
from streamflow.core.batch import Batch


def test_watermark_waits_for_the_oldest_batch() -> None:
    t = AckTracker()
    a, b, c = (t.track("p", pos) for pos in (10, 20, 30))
    c.release()
    b.release()
    assert t.watermark("p") is None
    a.release()
    assert t.watermark("p") == 30
    assert t.take_committable() == {"p": 30}
    assert t.take_committable() == {}


def test_retained_ack_needs_every_reference() -> None:
    t = AckTracker()
    a = t.track(0, 5)
    a.retain(2)  # fan-out to three sinks
    a.release()
    a.release()
    assert t.watermark(0) is None
    a.release()
    assert t.watermark(0) == 5


def test_forgotten_partition_ignores_late_acks() -> None:
    t = AckTracker()
    a = t.track(0, 5)
    t.forget([0])
    a.release()
    assert t.watermark(0) is None
    assert t.take_committable() == {}


def test_release_too_often_is_an_error() -> None:
    t = AckTracker()
    a = t.track(0, 1)
    a.release()
    try:
        a.release()
    except RuntimeError as exc:
        assert "released too often" in str(exc)
    else:
        raise AssertionError("double release went unnoticed")


async def test_wait_drained() -> None:
    t = AckTracker()
    a = t.track(0, 1)
    assert not await t.wait_drained([0], timeout=0.01)
    asyncio.get_running_loop().call_soon(a.release)
    assert await t.wait_drained([0], timeout=5)


# Each source batch is fanned out to 1..3 sinks; each copy may be filtered
# (acked at once) or split in parts; all references are then released in a
# random order. After every release the watermark must equal the end position
# of the longest fully acknowledged prefix of batches.
batch_plans = st.lists(
    st.tuples(st.integers(0, 2),                 # partition
              st.integers(1, 3),                 # fan-out copies
              st.integers(1, 3)),                # parts per copy (split by a transform)
    min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(plan=batch_plans, data=st.data())
def test_watermark_property(plan: list[tuple[int, int, int]], data: st.DataObject) -> None:
    tracker = AckTracker()
    positions: dict[int, int] = {}
    batches: list[tuple[int, int, Batch]] = []
    refs: list[Batch] = []
    for part, copies, parts in plan:
        positions[part] = positions.get(part, 0) + 1
        batch = Batch([], [tracker.track(part, positions[part])])
        batches.append((part, positions[part], batch))
        # every derived batch holds one reference; the original's reference is passed on
        total = copies * parts
        batch.retain(total - 1)
        refs.extend(batch.derive([]) for _ in range(total))
    order = data.draw(st.permutations(range(len(refs))))
    released = [0] * len(refs)
    for k in order:
        refs[k].ack()
        released[k] = 1
        for part in positions:
            done_prefix = None
            for p, pos, batch in batches:
                if p != part:
                    continue
                if all(a.refs == 0 for a in batch.acks):
                    done_prefix = pos
                else:
                    break
            assert tracker.watermark(part) == done_prefix
    for part, last in positions.items():
        assert tracker.watermark(part) == last
    assert tracker.pending() == 0
