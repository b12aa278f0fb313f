"""The brokers the Kafka workloads run against, started on 127.0.0.1 for the run.

- ``kafka``: Apache Kafka, a JVM (tests/kafka/broker.py; needs Java 17+).
- ``kfake``: franz-go's kfake, a Kafka-compatible broker in Go
  (tests/kafka/kfake_broker.py; built once with ``go`` into the user's cache).
  It costs the machine a fraction of a JVM broker's CPU, so on a small
  machine the clients' own CPU decides the throughput, as it does in
  production where the broker runs elsewhere.

Both launchers are the test suite's, loaded by path (``tests`` is not a package).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

#: ``--broker`` choices: the harness module that starts each, and the class in it.
BROKERS = {"kafka": ("broker.py", "KafkaBroker"), "kfake": ("kfake_broker.py", "KfakeBroker")}

_HARNESS = Path(__file__).resolve().parent.parent / "tests" / "kafka"


def _harness(file: str) -> ModuleType | None:
    """A launcher module of tests/kafka, imported by path (None when this tree has no tests)."""
    path = _HARNESS / file
    spec = importlib.util.spec_from_file_location(f"streamflow_bench_{path.stem}", path)
    if spec is None or spec.loader is None or not path.exists():
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def start_broker(kind: str, log: Callable[[str], None]) -> Any | None:
    """A started broker of ``kind`` (``.bootstrap``, ``.close()``), or None, logged, when it cannot run here."""
    file, cls = BROKERS[kind]
    harness = _harness(file)
    if harness is None:
        log(f"no broker launcher at {_HARNESS / file}")
        return None
    log(f"starting a local {kind} broker (tests/kafka/{file}) …")
    broker = getattr(harness, cls)()
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - no Java, no Go, no jars …: the kafka workloads are n/a
        log(f"cannot start a {kind} broker: {exc}")
        broker.close()
        return None
    log(f"{kind} broker at {broker.bootstrap}")
    return broker


@contextmanager
def start_second_broker(log: Callable[[str], None] = print) -> Iterator[str]:
    """kfake on a free loopback port while the block runs; yields its bootstrap address (fails if it cannot start)."""
    broker = start_broker("kfake", log)
    if broker is None:
        raise RuntimeError("the kfake broker cannot start here (see the line above)")
    try:
        yield str(broker.bootstrap)
    finally:
        broker.close()
