"""The points of one answer, expanded in parallel: one task per point, their events merged into one queue.

Why tasks and a queue: every point must reach the engine at once (continuous batching decodes them together),
while the answer's consumer reads one ordered stream of events. Each point task puts its deltas on the queue as
they come; ``drain`` hands them on. ``cancel`` stops every task, and their engine requests are aborted by the
answer's ``EngineCalls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from sotrag.app.citations import CitationStream
from sotrag.app.engine_calls import EngineCalls, RequestTrace
from sotrag.app.engines.base import GenerationDelta, GenerationRequest
from sotrag.app.events import Event, PointDelta, PointDone, PointStarted, Source
from sotrag.app.fork import SkeletonIds


@dataclass
class Point:
    index: int
    title: str
    trace: RequestTrace
    skeleton_ids: SkeletonIds
    citable: set[int]  # the passage numbers this point's prompt carries: its markers may name only these
    skeleton_prefix_tokens: int = 0  # prompt tokens continued from the skeleton request's own ids
    text: str = ""  # what users see: the model's text with its citation markers checked (``trace.text`` is raw)

    def __post_init__(self) -> None:
        self.reader = CitationStream(self.citable)
        self.reader.cite_from(self.title)  # a marker kept in the title cites for the point


# Builds a point's engine request (and its skeleton-prefix token count) inside the point's task.
Prepare = Callable[[Point], Awaitable[tuple[GenerationRequest, int]]]
# What a point task reads: its deltas from a request already handed to the engine (``EngineCalls.generate_group``),
# or a request, or a ``Prepare``, which the task runs itself.
Work = AsyncIterator[GenerationDelta] | GenerationRequest | Prepare


class _TaskEnd:
    """Queue marker: one point task has ended (its error, if any, travels with it)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class PointGroup:
    """The point tasks of one answer and the queue their events go through."""

    def __init__(self, calls: EngineCalls, cite: Callable[[Sequence[int]], list[Source]]) -> None:
        self.calls = calls
        self.cite = cite  # passage numbers -> their sources
        self.points: list[Point] = []
        self._queue: asyncio.Queue[Event | _TaskEnd] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._left = 0

    def new(self, title: str, skeleton: RequestTrace | None, citable: set[int]) -> Point:
        """The next point, forking from the skeleton request's ids as far as they are written now."""
        trace = RequestTrace(start_s=self.calls.now())
        point = Point(len(self.points) + 1, title, trace, SkeletonIds.of(skeleton), set(citable))
        self.points.append(point)
        return point

    def start(self, point: Point, work: Work) -> PointStarted:
        """Run ``point`` in its own task: its deltas as given, its ``request``, or one built in the task by a
        ``Prepare``."""
        self._tasks.append(asyncio.create_task(self._expand(point, work)))
        self._left += 1
        return PointStarted(index=point.index, title=point.title)

    async def _deltas(self, point: Point, work: Work) -> AsyncIterator[GenerationDelta]:
        if isinstance(work, GenerationRequest):
            return self.calls.generate(work, point.trace)
        if callable(work):
            request, point.skeleton_prefix_tokens = await work(point)
            return self.calls.generate(request, point.trace)
        return work

    async def _expand(self, point: Point, work: Work) -> None:
        error: BaseException | None = None
        try:
            async for delta in await self._deltas(point, work):
                self._show(point, *point.reader.feed(delta.text))
            self._show(point, *point.reader.finish())
            done = PointDone(
                index=point.index, text=point.text, tokens=point.trace.tokens, citations=self.cite(point.reader.cited)
            )
            self._queue.put_nowait(done)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            self._queue.put_nowait(_TaskEnd(error))

    def _show(self, point: Point, text: str, _markers: object) -> None:
        """Stream what the citation reader let through (never half a marker, never one naming no passage)."""
        if text:
            point.text += text
            self._queue.put_nowait(PointDelta(index=point.index, text=text))

    async def drain(self, *, wait: bool) -> AsyncIterator[Event]:
        """Yield what the point tasks queued: until all have ended (``wait``), or until the queue is empty. A
        point's error is raised here, in the answer's own task."""
        while self._left and (wait or not self._queue.empty()):
            item = await self._queue.get()
            if isinstance(item, _TaskEnd):
                self._left -= 1
                if item.error is not None:
                    raise item.error
            else:
                yield item

    async def cancel(self) -> None:
        """Stop every point task (their engine requests are aborted by ``EngineCalls.abort_all``)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._left = 0
