"""Stateful stream processing: keyed state stores and their Kafka changelog, watermarks, event-time windows."""

from .stores import BACKENDS, NOTHING_APPLIED, Change, MemoryStore, StateStore, open_store
from .views import MapState, ValueState, key_bytes

__all__ = ["BACKENDS", "NOTHING_APPLIED", "Change", "MapState", "MemoryStore", "StateStore", "ValueState",
           "key_bytes", "open_store"]
