"""A broker that refuses producer ids: the sink falls back to a producer without idempotence, exactly_once fails clearly.

Some Kafka-compatible brokers answer aiokafka's InitProducerId (version 0)
with ``[Error -1] UnknownError``. The broker here is franz-go's kfake
(tests/kafka/kfake_broker.py, built with Go from the Go module proxy) told to
answer every InitProducerId that way; a second kfake that answers normally
shows the fallback is not taken when it is not needed.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.sender import Sender
from conftest import KafkaEnv
from test_kafka_pipeline import run_until

from streamflow import Pipeline
from streamflow.connectors.kafka import KafkaSink, KafkaSource, _aiokafka
from streamflow.connectors.kafka.clients import ProducerIdRefused, start_client
from streamflow.core.runner import EXIT_OK, Runner

pytestmark = pytest.mark.kafka

FALLBACK = "runs without idempotence"


def _load_kfake() -> Any:
    """tests/kafka/kfake_broker.py, imported by path (``tests`` is not a package)."""
    path = Path(__file__).resolve().parent / "kafka" / "kfake_broker.py"
    spec = importlib.util.spec_from_file_location("streamflow_kfake_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kfake = _load_kfake()


def _kfake(refuse_idempotence: bool) -> Iterator[KafkaEnv]:
    try:
        broker = kfake.KfakeBroker(refuse_idempotence=refuse_idempotence).start()
    except kfake.KfakeError as exc:  # no Go, or the build failed: fail, do not skip
        pytest.fail(f"cannot start the kfake broker these tests need: {exc}")
    try:
        yield KafkaEnv(broker.bootstrap, broker)
    finally:
        broker.close()


@pytest.fixture(scope="module")
def refusing() -> Iterator[KafkaEnv]:
    """A kfake broker that answers every InitProducerId with UNKNOWN_SERVER_ERROR."""
    yield from _kfake(refuse_idempotence=True)


@pytest.fixture(scope="module")
def agreeing() -> Iterator[KafkaEnv]:
    """A kfake broker that gives producer ids as Kafka does."""
    yield from _kfake(refuse_idempotence=False)


def test_aiokafka_still_waits_for_the_producer_id_where_the_adapter_looks() -> None:
    assert callable(getattr(Sender, _aiokafka.WAIT_FOR_PRODUCER_ID, None))


async def test_an_idempotent_producer_fails_clearly_and_is_closed(refusing: KafkaEnv) -> None:
    loop = asyncio.get_running_loop()
    unclosed: list[str] = []
    loop.set_exception_handler(lambda _, context: unclosed.append(str(context.get("message"))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ProducerIdRefused) as refusal:
            await start_client(lambda: AIOKafkaProducer(bootstrap_servers=refusing.bootstrap, acks="all",
                                                        enable_idempotence=True),
                               "test producer", 10, logging.getLogger("test"), refusing.bootstrap)
        message = str(refusal.value)
        del refusal
        gc.collect()
    loop.set_exception_handler(None)
    assert f"the broker at {refusing.bootstrap} refused to give a producer id" in message
    assert "[Error -1] UnknownError" in message and "exactly_once" in message
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    assert "Unclosed AIOKafkaProducer" not in unclosed


async def test_a_producer_without_idempotence_asks_for_no_producer_id(refusing: KafkaEnv) -> None:
    plain = await start_client(lambda: AIOKafkaProducer(bootstrap_servers=refusing.bootstrap, acks="all"),
                               "test producer", 10, logging.getLogger("test"), refusing.bootstrap)
    try:
        out = await refusing.topic("plain")
        await (await plain.send(out, b"x"))
    finally:
        await plain.stop()
    assert sum((await refusing.end_offsets(out)).values()) == 1


async def test_at_least_once_sink_falls_back_warns_once_and_delivers_in_order(
        refusing: KafkaEnv, caplog: pytest.LogCaptureFixture) -> None:
    src, out = await refusing.topic("refused-in"), await refusing.topic("refused-out")
    n = 3000
    await refusing.produce(src, [(f"k{i % 6}", {"id": i}, i % 3) for i in range(n)])
    source = KafkaSource(bootstrap_servers=refusing.bootstrap, topics=[src], group_id=f"g-{src}")
    sink = KafkaSink(bootstrap_servers=refusing.bootstrap, topic=out)
    pipeline = Pipeline("refused", commit_interval=0.2).source(source).sink(sink)
    with caplog.at_level(logging.WARNING, logger="streamflow.kafka.sink"):
        records, _ = await run_until(pipeline, refusing.consume(
            out, lambda recs: len(recs) >= n, what="output through the fallback producer"))

    fallbacks = [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]
    assert len(fallbacks) == 1, fallbacks
    assert "[Error -1] UnknownError" in fallbacks[0] and "write a record twice" in fallbacks[0]
    assert not [r for r in caplog.records if r.name.startswith("aiokafka") and "InitProducerId" in r.getMessage()]
    assert not sink._producer.idempotence  # type: ignore[union-attr]
    ids = [orjson.loads(r.value)["id"] for r in records]
    assert sorted(ids) == list(range(n))
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(orjson.loads(r.value)["id"])
    for key, key_ids in by_key.items():  # a key's events all came from one input partition, in order
        assert key_ids == sorted(key_ids), key
    assert await refusing.committed(f"g-{src}", src) == {0: n // 3, 1: n // 3, 2: n // 3}


async def test_a_broker_that_gives_producer_ids_keeps_idempotence(
        agreeing: KafkaEnv, caplog: pytest.LogCaptureFixture) -> None:
    out = await agreeing.topic("agreed-out")
    sink = KafkaSink(bootstrap_servers=agreeing.bootstrap, topic=out)
    pipeline = Pipeline("agreed").source("generator", count=50).sink(sink)
    with caplog.at_level(logging.WARNING, logger="streamflow.kafka.sink"):
        result = await Runner(pipeline, handle_signals=False).run()
    assert result.exit_code == EXIT_OK, result.summary()
    assert len(await agreeing.consume(out, lambda recs: len(recs) >= 50)) == 50
    assert sink._producer.idempotence  # type: ignore[union-attr]
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


async def test_exactly_once_fails_with_the_brokers_refusal(refusing: KafkaEnv) -> None:
    src, out = await refusing.topic("eos-in"), await refusing.topic("eos-out")
    await refusing.produce(src, [(None, {"id": i}, i % 3) for i in range(30)])
    pipeline = (Pipeline("eos-refused", delivery="exactly_once")
                .source(KafkaSource(bootstrap_servers=refusing.bootstrap, topics=[src], group_id=f"g-{src}"))
                .sink(KafkaSink(bootstrap_servers=refusing.bootstrap, topic=out)))
    result = await asyncio.wait_for(Runner(pipeline, handle_signals=False).run(), 60)
    assert result.exit_code != EXIT_OK
    summary = result.summary()
    assert "refused to give a producer id" in summary and "exactly_once" in summary, summary
    assert await refusing.end_offsets(out) in ({}, {0: 0, 1: 0, 2: 0})  # nothing written


def _running_total(value: dict[str, int], state: Any) -> dict[str, int]:
    balance = state.balance.get(0) + value["amount"]
    state.balance.set(balance)
    return {**value, "balance": balance}


async def test_keyed_state_logs_its_changelog_without_idempotence(
        refusing: KafkaEnv, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from streamflow.connectors.kafka.source_config import KafkaConnection
    from streamflow.state.changelog import Changelog, changelog_topic
    from streamflow.state.stores import open_store

    src, out = await refusing.topic("state-refused-in"), await refusing.topic("state-refused-out")
    n, accounts = 600, 30
    await refusing.produce(src, [(f"a{i % accounts}", {"id": i, "amount": i % 7}, (i % accounts) % 3)
                                 for i in range(n)])
    name = f"refused-state-{src}"
    pipeline = (Pipeline(name, commit_interval=0.2)
                .source(KafkaSource(bootstrap_servers=refusing.bootstrap, topics=[src], group_id=f"g-{src}"))
                .map(_running_total, state={"balance": "value"}, name="total")
                .sink(KafkaSink(bootstrap_servers=refusing.bootstrap, topic=out)))
    with caplog.at_level(logging.WARNING, logger="streamflow.kafka.sink"):
        await run_until(pipeline, refusing.consume(out, lambda recs: len(recs) >= n, what="running totals"))
    fallbacks = [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]
    assert any(f.startswith("changelog ") for f in fallbacks), fallbacks  # the changelog fell back too
    changelog = Changelog(KafkaConnection(bootstrap_servers=refusing.bootstrap),
                          changelog_topic(name, "balance"), 3)
    await changelog.start()
    balances: dict[str, int] = {}
    try:
        for p in range(3):
            store = open_store("memory", tmp_path, "balance", p)
            await changelog.restore(store)
            balances.update({k.decode(): orjson.loads(v) for k, v in store.items()})
    finally:
        await changelog.stop()
    assert balances == {f"a{a}": sum(i % 7 for i in range(a, n, accounts)) for a in range(accounts)}
