"""What a key costs in a memory store: its bytes, not an encoder's buffer."""

from __future__ import annotations

import tracemalloc

from streamflow.state import MapState, ValueState, open_store


def test_a_small_value_takes_bytes_of_its_size_not_a_4_kib_buffer(tmp_path) -> None:
    store = open_store("memory", tmp_path, "counts", 0)
    counts, tags = ValueState(store), MapState(open_store("memory", tmp_path, "tags", 0))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            store.begin(i)
            counts.bind(f"user-{i}")
            counts.set(i)
            tags.store.begin(i)
            tags.bind(f"user-{i}")
            tags.set("last", "x")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert counts.get() == 1999 and tags.get("last") == "x"
    # 4,000 values, their keys and the pending changes: ~1 MB; an orjson buffer per value would be 16 MB
    assert held < 3_000_000, held
