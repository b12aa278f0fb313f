"""Workload name -> class, imported lazily so a child loads only what it runs."""

from __future__ import annotations

import importlib

from .harness import Workload

#: Workload name -> ``module:Class`` inside this package.
WORKLOADS: dict[str, str] = {
    "file-enrich": "file_enrich:FileEnrich",
    "kafka-enrich": "kafka_enrich:KafkaEnrich",
    "kafka-count": "kafka_count:KafkaCount",
    "io-enrich": "io_enrich:IoEnrich",
    "memory": "memory:Memory",
    "state-restore": "state_restore:StateRestore",
    "avro-decode": "avro_codec:AvroDecode",
    "avro-encode": "avro_codec:AvroEncode",
    "postgres-enrich": "postgres_enrich:PostgresEnrich",
}


def workload_class(name: str) -> type[Workload]:
    module, _, cls = WORKLOADS[name].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)
