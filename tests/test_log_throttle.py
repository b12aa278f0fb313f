"""Per-event warnings are aggregated: the first few per interval, then one line with the count."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.log_throttle import BURST, LogThrottle
from streamflow.core.runner import EXIT_OK


def test_five_thousand_dead_letters_log_a_few_lines_that_still_count_every_event(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streamflow.errors")
    src = MemorySource(values=[b"{broken %d" % i for i in range(5000)], batch_size=500)
    dlq = MemorySink()
    result = (Pipeline("bad").source(src).transform("parse", on_error="dead_letter").sink(MemorySink())
              .dead_letter(dlq).run(handle_signals=False))
    assert result.exit_code == EXIT_OK and len(dlq.values) == 5000
    lines = [r for r in caplog.records if r.name == "streamflow.errors"]
    one_by_one = [r for r in lines if r.getMessage().startswith("stage parse: dead-lettered event at")]
    summaries = [r for r in lines if "not logged one by one" in r.getMessage()]
    assert len(one_by_one) <= 2 * BURST and summaries
    assert len(one_by_one) + sum(r.suppressed for r in summaries) == 5000  # type: ignore[attr-defined]
    assert all(r.getMessage().startswith("stage parse: ") for r in lines)


async def test_the_summary_comes_when_the_interval_ends(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("streamflow.test.throttle")
    caplog.set_level(logging.WARNING, logger=log.name)
    throttle = LogThrottle(log, "stage s: ", burst=2, interval=0.05)
    for i in range(10):
        throttle.warning("skipped", {"stage": "s"}, "event %d skipped", i)
    assert [r.getMessage() for r in caplog.records] == ["event 0 skipped", "event 1 skipped"]
    for _ in range(100):
        if len(caplog.records) == 3:
            break
        await asyncio.sleep(0.01)
    summary = caplog.records[-1]
    assert summary.getMessage().startswith("stage s: 8 more events skipped in ")
    assert summary.getMessage().endswith("(the last: event 9 skipped)")
    assert summary.stage == "s" and summary.suppressed == 8  # type: ignore[attr-defined]


def test_a_retried_coordinator_lookup_on_first_start_is_not_an_error() -> None:
    from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

    from streamflow.observability.logging import RetriedLibraryErrors, quiet_retried_library_errors

    quiet_retried_library_errors()
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    assert any(isinstance(f, RetriedLibraryErrors) for f in logger.filters)

    def level(error: Exception) -> str:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "Group Coordinator Request failed: %s",
                                   (error,), None)
        assert RetriedLibraryErrors().filter(record)
        return record.levelname

    assert level(GroupCoordinatorNotAvailableError()) == "INFO"  # retried by aiokafka
    assert level(GroupAuthorizationFailedError()) == "ERROR"  # fatal
