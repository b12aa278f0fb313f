"""`ShutdownSignals`: the first SIGTERM/SIGINT asks for a graceful stop, any later one aborts; handlers go away after."""

from __future__ import annotations

import asyncio
import os
import signal

from streamflow.core.signals import ShutdownSignals


class Calls:
    def __init__(self) -> None:
        self.stops = 0
        self.aborts: list[str] = []
        self.stopped = asyncio.Event()

    def stop(self) -> None:
        self.stops += 1
        self.stopped.set()

    def abort(self, reason: str) -> None:
        self.aborts.append(reason)


def test_first_signal_stops_a_second_aborts() -> None:
    calls = Calls()
    handler = ShutdownSignals(calls.stop, calls.abort)
    handler(signal.SIGTERM)
    assert (calls.stops, calls.aborts) == (1, [])
    handler(signal.SIGINT)
    handler(signal.SIGTERM)
    assert calls.stops == 1
    assert calls.aborts == ["aborted by second SIGINT", "aborted by second SIGTERM"]


async def test_installed_only_inside_the_block() -> None:
    loop = asyncio.get_running_loop()
    calls = Calls()
    with ShutdownSignals(calls.stop, calls.abort).installed(loop):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(calls.stopped.wait(), 10)
    assert calls.stops == 1
    assert not loop.remove_signal_handler(signal.SIGTERM)  # nothing left installed
    assert not loop.remove_signal_handler(signal.SIGINT)
