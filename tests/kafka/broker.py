"""The test suite's Kafka broker: `streamflow.dev.kafka`'s launcher, plus the switch to an external broker.

The launcher itself (a real single-node Apache Kafka 4.x, KRaft, on
127.0.0.1, from the release jars) lives in the package so that
`streamflow dev kafka` ships with it; this module keeps the names the
fixtures use. Command line::

    python tests/kafka/broker.py               # run a broker on a free port until Ctrl-C/SIGTERM
    python tests/kafka/broker.py --fetch-only  # only resolve the jars (CI warm-up)

``STREAMFLOW_TEST_BOOTSTRAP``: tests use an external broker at that address
instead of starting one (see :func:`external_bootstrap`).
"""

from __future__ import annotations

import argparse
import os
import sys

from streamflow.dev.kafka import (
    KAFKA_VERSION,
    DevKafka,
    KafkaBroker,
    KafkaHarnessError,
    default_cache_dir,
    ensure_jars,
    fetch_jars,
    find_java,
    find_mvn,
    free_port,
    kafka_version,
)

__all__ = ["KAFKA_VERSION", "KafkaBroker", "KafkaHarnessError", "default_cache_dir", "ensure_jars",
           "external_bootstrap", "find_java", "find_mvn", "free_port", "kafka_version"]

_free_port = free_port


def external_bootstrap() -> str | None:
    """``$STREAMFLOW_TEST_BOOTSTRAP`` if set: tests should use that broker."""
    value = os.environ.get("STREAMFLOW_TEST_BOOTSTRAP", "").strip()
    return value or None


def main(argv: list[str] | None = None) -> int:
    """Run a broker on a free port (or ``--port``) until Ctrl-C/SIGTERM, or only fetch the jars."""
    ap = argparse.ArgumentParser(
        description="Run a real single-node Kafka (KRaft) broker on 127.0.0.1 for streamflow.")
    ap.add_argument("--fetch-only", action="store_true",
                    help="only resolve the Kafka jars into the cache, then exit")
    ap.add_argument("--port", type=int, help="PLAINTEXT port (default: a free one)")
    ap.add_argument("--workdir", help="data+log directory (default: a fresh temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory on exit")
    ap.add_argument("--heap", default="512m", help="JVM max heap (default 512m)")
    ap.add_argument("--topic", action="append", default=[], metavar="NAME[:PARTITIONS]",
                    help="create this topic once the broker is up (repeatable)")
    ap.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                    help="extra server.properties entry (repeatable)")
    args = ap.parse_args(argv)
    if args.fetch_only:
        return fetch_jars(sys.stdout)
    return DevKafka(port=args.port, topics=args.topic, workdir=args.workdir, keep=args.keep,
                    heap=args.heap, config=dict(kv.split("=", 1) for kv in args.config)).run()


if __name__ == "__main__":
    sys.exit(main())
