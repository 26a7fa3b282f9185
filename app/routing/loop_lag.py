"""How late this process's event loop wakes a timer: a load signal the engine's own stats cannot give.

The pipeline, and with the in-process engine also vLLM's output handling (detokenizing, one stream per point),
run on one asyncio loop, on one core. SoT costs that loop more per answer than normal decoding does (about 8
streams instead of 1), so under enough load the loop, not the GPU, is what saturates: in the GPU load runs on a
small model, SoT answers took many times their idle latency while vLLM reported a barely raised inter-token
latency and nothing waiting (docs/BENCHMARKS.md; the runs in docs/archive/benchmarks-history.md). Only the loop's
lag shows that cost.

``LoopLag.watch()`` (from inside the loop, idempotent) starts a task that sleeps ``interval_s`` and records how
late it woke; ``lag_s()`` is the median lateness over the last ``window_s`` (thread-safe: the router reads it
from a worker thread). One monitor per process, ``LOOP_LAG``: ``make_router`` hands it to the router, and the
pipeline starts it at the first ``mode="auto"`` answer.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import deque


class LoopLag:
    """Median timer lateness of the running event loop over the last ``window_s`` seconds."""

    def __init__(self, interval_s: float = 0.01, window_s: float = 0.5) -> None:
        if interval_s <= 0 or window_s < interval_s:
            raise ValueError("need 0 < interval_s <= window_s")
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(8, int(4 * window_s / interval_s)))
        self._due: float | None = None  # when the current sleep should end (monotonic)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Start measuring the running loop (no-op while already doing so)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        with self._lock:
            self._samples.clear()
            self._due = None
        self._loop = loop
        self._task = loop.create_task(self._run(), name="sotrag-loop-lag")

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.interval_s
            with self._lock:
                self._due = due
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            with self._lock:
                self._samples.append((now, max(0.0, now - due)))

    def lag_s(self) -> float | None:
        """The loop's recent lateness in seconds; None before ``watch()``, once its loop has gone, or while it is
        not running (a loop kept between runs would otherwise look late by the whole pause)."""
        loop = self._loop
        if self._task is None or self._task.done() or loop is None or not loop.is_running():
            return None
        now = time.monotonic()
        with self._lock:
            recent = [lag for t, lag in self._samples if now - t <= self.window_s]
            pending = now - self._due if self._due is not None else 0.0
        if pending > self.interval_s:  # the loop has not come back to the timer yet: that lateness counts too
            recent.append(pending)
        return statistics.median(recent) if recent else 0.0

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None


LOOP_LAG = LoopLag()
