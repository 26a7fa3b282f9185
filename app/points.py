"""The points of one answer, expanded in parallel: one task per point, their events merged into one queue.

Why tasks and a queue: every point must reach the engine at once (continuous batching decodes them together),
while the answer's consumer reads one ordered stream of events. Each point task puts its deltas on the queue as
they come; ``drain`` hands them on. ``withdraw`` stops the tasks of points the answer no longer wants (a
discarded skeleton's, or eager points the skeleton reader took back): closing a task's stream aborts its engine
request, and whatever such a task had queued is never handed on, so nothing of a withdrawn point reaches the
points that replace it. ``cancel`` stops every task (their requests are aborted by the answer's ``EngineCalls``).
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


@dataclass(eq=False)  # identity: a withdrawn point and the one that replaces it may share index and title
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
        self.points: list[Point] = []  # the answer's points now, in skeleton order (withdrawn ones removed)
        # every entry names the point that queued it: one no longer running (withdrawn, or ended) is skipped
        self._queue: asyncio.Queue[tuple[Point, Event | _TaskEnd]] = asyncio.Queue()
        self._running: dict[int, tuple[Point, asyncio.Task[None]]] = {}  # by id(point)

    def new(self, title: str, skeleton: RequestTrace | None, citable: set[int]) -> Point:
        """The next point, forking from the skeleton request's ids as far as they are written now."""
        trace = RequestTrace(start_s=self.calls.now())
        point = Point(len(self.points) + 1, title, trace, SkeletonIds.of(skeleton), set(citable))
        self.points.append(point)
        return point

    def start(self, point: Point, work: Work) -> PointStarted:
        """Run ``point`` in its own task: its deltas as given, its ``request``, or one built in the task by a
        ``Prepare``."""
        self._running[id(point)] = (point, asyncio.create_task(self._expand(point, work)))
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
        deltas: AsyncIterator[GenerationDelta] | None = None
        try:
            deltas = await self._deltas(point, work)
            async for delta in deltas:
                self._show(point, *point.reader.feed(delta.text))
            self._show(point, *point.reader.finish())
            done = PointDone(
                index=point.index, text=point.text, tokens=point.trace.tokens, citations=self.cite(point.reader.cited)
            )
            self._queue.put_nowait((point, done))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            close = getattr(deltas if deltas is not None else work, "aclose", None)
            if close is not None:  # a stream never read to its end (or never started): the engine aborts it
                await close()
            self._queue.put_nowait((point, _TaskEnd(error)))

    def _show(self, point: Point, text: str, _markers: object) -> None:
        """Stream what the citation reader let through (never half a marker, never one naming no passage)."""
        if text:
            point.text += text
            self._queue.put_nowait((point, PointDelta(index=point.index, text=text)))

    async def drain(self, *, wait: bool) -> AsyncIterator[Event]:
        """Yield what the running point tasks queued: until all have ended (``wait``), or until the queue is
        empty. A point's error is raised here, in the answer's own task."""
        while self._running and (wait or not self._queue.empty()):
            point, item = await self._queue.get()
            if id(point) not in self._running:
                continue  # queued by a task since withdrawn
            if isinstance(item, _TaskEnd):
                del self._running[id(point)]
                if item.error is not None:
                    raise item.error
            else:
                yield item

    async def withdraw(self, first: int = 1) -> list[Point]:
        """Take back the points from index ``first`` on: stop their tasks (which aborts their requests) and
        forget them and what they queued. Returns them, in order."""
        gone = self.points[first - 1 :]
        del self.points[first - 1 :]
        await self._stop([id(p) for p in gone])
        return gone

    async def cancel(self) -> None:
        """Stop every point task (their engine requests are aborted by ``EngineCalls.abort_all``)."""
        await self._stop(list(self._running))

    async def _stop(self, keys: list[int]) -> None:
        tasks = [self._running.pop(k)[1] for k in keys if k in self._running]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
