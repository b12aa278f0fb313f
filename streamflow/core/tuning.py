"""Process tuning for batch-shaped work: the event loop, the allocator and the cyclic garbage collector.

A pipeline allocates a batch's worth of objects (thousands of messages, dicts,
strings and encoded buffers), frees them, and does it again, thousands of
times a second. Two CPython/glibc defaults turn that into overhead; measured
on the file-enrich benchmark (benchmarks/README.md):

* glibc trims the heap whenever more than 128 KiB (adjusted on the fly) is free
  at its top, so each freed batch shrinks the heap with ``brk`` and the next
  batch grows it again, page-faulting fresh zeroed pages: JSON encoding cost
  3-4 µs per event instead of 0.8 and the pipeline ran ~1.8x slower. A 32 MiB
  trim threshold keeps that memory for reuse; peak memory is unchanged.
* The collector's first generation runs every 700 net container allocations,
  i.e. a few times per batch, and promotes the batches in flight to older
  generations that are then traversed again and again: ~20% of the CPU time
  on the file path, ~12% on the Kafka path even at 10,000. A pipeline holds
  up to its channels' capacity in flight (tens of thousands of events); with
  a threshold of 100,000 the first generation runs only when live objects
  really grow (measured on kafka-enrich: GC 0.6 s -> 0.07 s of CPU per 500k
  events). Objects in reference cycles are still collected, just later (at
  most that many allocations later).
* Setting the trim threshold also stops glibc from raising its mmap threshold
  as it sees large blocks freed, so every block of 128 KiB or more (a fetch
  response, a batch's joined payloads, a record batch) was mapped afresh and
  page-faulted in, zeroed, each time: kafka-enrich took 54k minor faults per
  300k events instead of 30k with an 8 MiB mmap threshold.

`tune_allocator` (both thresholds) is applied once per process (glibc only). `gc_tuned` raises
the first-generation threshold for the duration of a run and restores it
(`tune_gc` raises it for good).
``STREAMFLOW_TUNING=0`` turns both off.

`new_event_loop` is the loop `run_pipeline` runs on: uvloop when it is
installed (its loop, transports and timers cost less per batch than asyncio's).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import platform
from collections.abc import Iterator

#: Free bytes at the top of the heap that glibc keeps instead of returning them.
TRIM_THRESHOLD = 32 << 20
#: Net container allocations between two first-generation collections during a run.
GC_GEN0_THRESHOLD = 100_000
#: Allocations at least this large get their own ``mmap`` (and fresh zeroed pages each time).
MMAP_THRESHOLD = 8 << 20
#: ``mallopt`` parameter numbers of the trim and mmap thresholds (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Set to ``0`` to leave the allocator and the collector alone.
ENV_SWITCH = "STREAMFLOW_TUNING"

_allocator_tuned: bool | None = None


def _disabled() -> bool:
    return os.environ.get(ENV_SWITCH) == "0"


def tune_allocator() -> bool:
    """Raise glibc's heap trim and mmap thresholds once per process; True if they are (now) raised.

    Does nothing off glibc, when disabled, or when the user already tunes
    malloc through ``GLIBC_TUNABLES`` / ``MALLOC_TRIM_THRESHOLD_``.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if _disabled() or "GLIBC_TUNABLES" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # setting the trim threshold also fixes glibc's mmap threshold at 128 KiB (it no longer adapts): set it
    _allocator_tuned = (mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                        and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    return _allocator_tuned


def tune_gc() -> tuple[int, int, int] | None:
    """Raise the first-generation GC threshold to `GC_GEN0_THRESHOLD`; the previous thresholds, or
    None when left alone (disabled, collector off, or already at least that high)."""
    before = gc.get_threshold()
    if _disabled() or before[0] == 0 or before[0] >= GC_GEN0_THRESHOLD:
        return None
    gc.set_threshold(GC_GEN0_THRESHOLD, *before[1:])
    return before


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """First-generation GC threshold of at least `GC_GEN0_THRESHOLD` inside the block."""
    before = tune_gc()
    try:
        yield
    finally:
        if before is not None and gc.get_threshold()[0] == GC_GEN0_THRESHOLD:  # unless changed meanwhile
            gc.set_threshold(*before)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
