"""`connect_timeout`: a Kafka client keeps trying for the whole timeout, then fails with a clear error."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from aiokafka import AIOKafkaConsumer

from streamflow.connectors.kafka.clients import KafkaUnreachable, start_client


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connect_timeout_is_spent_in_full_before_giving_up() -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable, match=f"cannot connect to Kafka at {bootstrap} within 2.5s"):
        await start_client(lambda: AIOKafkaConsumer(bootstrap_servers=bootstrap), "test consumer", 2.5,
                           logging.getLogger("test"), bootstrap)
    assert time.monotonic() - started >= 2.5  # it used to give up once the next backoff would not fit
