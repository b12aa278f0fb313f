"""Join configs rejected before any I/O, and the key helpers both joins share."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streamflow import Pipeline
from streamflow.core.errors import ConfigError
from streamflow.core.message import Message
from streamflow.state.copartition import KeyPartitions, NotCoPartitioned, check_copartitioned, key_partition
from streamflow.transforms.interval_join import IntervalJoin
from streamflow.transforms.join import Join
from streamflow.transforms.join_keys import check_key, join_key


def _kafka(*topics: str) -> dict[str, object]:
    return {"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "topics": list(topics)}


def test_an_interval_join_needs_a_source_over_both_topics() -> None:
    join = {"left": "orders", "right": "payments", "before": 0, "after": 60}
    one = Pipeline("p").source("kafka", **_kafka("orders")).transform("interval_join", **join).sink("stdout")
    with pytest.raises(ConfigError, match=r"stage 'interval_join' .* it consumes 1 topics .* the stage joins 2"):
        one.validate()
    both = Pipeline("p").source("kafka", **_kafka("orders", "payments")).transform("interval_join", **join) \
        .sink("stdout")
    assert both.validate() is both
    table = Pipeline("p").source("kafka", **_kafka("orders", "payments")) \
        .transform("join", table={"topic": "customers"}).sink("stdout")
    with pytest.raises(ConfigError, match="consumes several topics"):
        table.validate()


def test_bad_join_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="`key` or `key_fn`, not both"):
        Join(table={"topic": "c"}, key="customer", key_fn=str)
    with pytest.raises(ValueError, match="two different topics"):
        IntervalJoin(left="a", right="a", before=1, after=1)
    with pytest.raises(ValueError, match="before"):
        IntervalJoin(left="a", right="b", before=-1, after=1)
    with pytest.raises(ValueError, match="concurrency"):
        Join(table={"topic": "c"}, concurrency=2)
    with pytest.raises(ValueError, match="table.codec"):
        Join(table={"topic": "c", "codec": "nope"})


def test_join_keys_are_bytes_and_partitioned_like_the_producer_does() -> None:
    assert [join_key(k) for k in ("ann", b"\x00", 7, 2.5)] == [b"ann", b"\x00", b"7", b"2.5"]
    for bad in (None, True, {"a": 1}):
        with pytest.raises(ValueError):
            join_key(bad)
    parts = list(range(6))
    for key in (b"ann", b"bob", b"k17", b""):
        assert key_partition(key, 6) == DefaultPartitioner()(key, parts, parts)
    home_of = KeyPartitions(3, limit=2)
    assert [home_of(k) for k in (b"a", b"b", b"c", b"a")] == [key_partition(k, 3) for k in (b"a", b"b", b"c", b"a")]
    home = home_of(b"ann")
    check_key(b"ann", Message({}, topic="orders", partition=home), home_of, "customers")
    with pytest.raises(NotCoPartitioned, match=rf"belongs in partition {home} .* came from orders\["):
        check_key(b"ann", Message({}, topic="orders", partition=(home + 1) % 3), home_of, "customers")


def test_partition_counts_that_differ_are_named() -> None:
    check_copartitioned("orders", 3, "customers", 3)
    with pytest.raises(NotCoPartitioned, match=r"topics 'orders' \(3 partitions\) and 'customers' \(2 partitions\)"):
        check_copartitioned("orders", 3, "customers", 2)
