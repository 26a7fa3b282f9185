"""The event-loop lag signal: a real asyncio loop, idle and then blocked by callbacks that hold the CPU."""

from __future__ import annotations

import asyncio
import time

import pytest

from sotrag.app.routing.loop_lag import LoopLag


async def test_an_idle_loop_has_no_lag_and_a_blocked_one_does() -> None:
    lag = LoopLag(interval_s=0.01, window_s=0.3)
    assert lag.lag_s() is None  # not watching yet
    lag.watch()
    lag.watch()  # idempotent: still one task
    try:
        await asyncio.sleep(0.35)
        idle = lag.lag_s()
        assert idle is not None and idle < 0.05

        loop = asyncio.get_running_loop()
        end = time.monotonic() + 0.6

        def hog() -> None:  # holds the loop 60 ms at a time, as a saturated output handler would
            time.sleep(0.06)
            if time.monotonic() < end:
                loop.call_soon(hog)

        loop.call_soon(hog)
        while time.monotonic() < end:
            await asyncio.sleep(0.01)
        busy = lag.lag_s()
        assert busy is not None and busy >= 0.02, busy
        await asyncio.sleep(0.5)  # the window moves on: calm again
        calm = lag.lag_s()
        assert calm is not None and calm < busy
    finally:
        lag.stop()
    assert lag.lag_s() is None


def test_a_loop_that_is_not_running_reports_nothing() -> None:
    lag = LoopLag()
    loop = asyncio.new_event_loop()
    async def start() -> None:
        lag.watch()
        await asyncio.sleep(0.02)

    try:
        loop.run_until_complete(start())
        time.sleep(0.05)  # the loop is idle, not running: its timer is not late, nobody runs it
        assert lag.lag_s() is None
    finally:
        loop.close()


@pytest.mark.parametrize("kwargs", [{"interval_s": 0.0}, {"interval_s": 0.1, "window_s": 0.05}])
def test_nonsense_intervals_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoopLag(**kwargs)
