"""A real single-node Apache Kafka (KRaft) on 127.0.0.1 for development and tests, from the release jars.

Needs Java 17+ and, once, Maven (to fetch the jars from Maven Central into
``~/.cache/streamflow/kafka-<version>``). `streamflow dev kafka` runs one in
the foreground; the test suite starts its own through `KafkaBroker`.
"""

from __future__ import annotations

from .broker import KafkaBroker, free_port, port_is_free
from .jars import (
           KAFKA_VERSION,
           KafkaHarnessError,
           default_cache_dir,
           ensure_jars,
           find_java,
           find_mvn,
           kafka_version,
)
from .serve import DEFAULT_PORT, DevKafka, fetch_jars, parse_topic

__all__ = ["DEFAULT_PORT", "KAFKA_VERSION", "DevKafka", "KafkaBroker", "KafkaHarnessError", "default_cache_dir",
           "ensure_jars", "fetch_jars", "find_java", "find_mvn", "free_port", "kafka_version", "parse_topic",
           "port_is_free"]
