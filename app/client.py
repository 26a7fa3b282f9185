"""The library surface: ``SoTRAG`` answers from plain synchronous code or from any event loop.

vLLM's ``AsyncLLM`` is bound to the event loop it was created in. ``SoTRAG`` therefore owns one background
loop thread where the engine and pipeline live; ``answer``/``stream`` block on it, and ``aanswer``/``astream``
bridge its events into the caller's loop. Closing an ``astream`` early cancels the answer in the engine loop,
which aborts its vLLM requests.

    from sotrag import SoTRAG
    with SoTRAG(model="/models/qwen2.5-0.5b-instruct") as qa:
        result = qa.answer("How do I sleep better?")
        print(result.answer, result.stats.total_s)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from sotrag.app.config import Settings
from sotrag.app.engines.base import Engine
from sotrag.app.events import AnswerDone, AnswerResult, Event
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import AnswerRequest

T = TypeVar("T")
_END = object()


class SoTRAG:
    """A Skeleton-of-Thought question answerer over one engine (and, optionally, a document index)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        model: str | None = None,
        index_dir: str | None = None,
        engine: Engine | None = None,
    ) -> None:
        settings = settings or Settings()
        if model is not None:
            settings = settings.model_copy(update={"engine": settings.engine.model_copy(update={"model": model})})
        if index_dir is not None:
            settings = settings.model_copy(update={"index_dir": index_dir})
        self.settings = settings
        self._engine = engine
        self._pipeline: SoTPipeline | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sotrag-engine-loop", daemon=True)
        self._thread.start()
        self._start_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def start(self) -> SoTPipeline:
        """Start the engine (and open the index) now; otherwise the first question does it."""
        with self._start_lock:
            if self._pipeline is None:
                self._pipeline = self._submit(self._create_pipeline()).result()
        return self._pipeline

    async def _create_pipeline(self) -> SoTPipeline:
        from sotrag.app.factory import create_pipeline

        return await create_pipeline(self.settings, engine=self._engine)

    def close(self) -> None:
        if self._pipeline is not None:
            self._submit(self._pipeline.engine.aclose()).result()
            self._pipeline = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> SoTRAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering ------------------------------------------------------------------------------------

    def answer(self, question: str | AnswerRequest, **kwargs: Any) -> AnswerResult:
        """Answer and block until done. Takes an ``AnswerRequest``, or a question and its fields as keywords
        (``mode``, ``history``, ``passages_k``, ``filters``, ``sampling``, ``sot``)."""
        pipeline = self.start()
        return self._submit(pipeline.run(question, **kwargs)).result()

    def stream(self, question: str | AnswerRequest, **kwargs: Any) -> Iterator[Event]:
        """Yield the answer's events as they happen, from synchronous code."""
        pipeline = self.start()
        agen = pipeline.stream(question, **kwargs)

        async def next_event() -> Event:
            return await agen.__anext__()

        try:
            while True:
                try:
                    yield self._submit(next_event()).result()
                except StopAsyncIteration:
                    return
        finally:
            self._submit(agen.aclose()).result()

    async def aanswer(self, question: str | AnswerRequest, **kwargs: Any) -> AnswerResult:
        async for event in self.astream(question, **kwargs):
            if isinstance(event, AnswerDone):
                return event.result
        raise RuntimeError("the answer stream ended without a result")  # pragma: no cover

    async def astream(self, question: str | AnswerRequest, **kwargs: Any) -> AsyncIterator[Event]:
        """Yield the answer's events inside the caller's event loop."""
        pipeline = await asyncio.to_thread(self.start)
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for event in pipeline.stream(question, **kwargs):
                    caller.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:
                caller.call_soon_threadsafe(queue.put_nowait, exc)
                raise
            finally:
                caller.call_soon_threadsafe(queue.put_nowait, _END)

        future = self._submit(pump())
        ended = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    ended = True
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not ended:
                future.cancel()  # cancels the pump in the engine loop: the pipeline aborts its requests
                with contextlib.suppress(TimeoutError):  # a pump cancelled before it started never ends
                    await asyncio.wait_for(_until_end(queue), timeout=30)


async def _until_end(queue: asyncio.Queue[Any]) -> None:
    while await queue.get() is not _END:
        pass


def answer(question: str, *, model: str | None = None, **kwargs: Any) -> AnswerResult:
    """One question, one answer: starts an engine, answers, shuts it down. Use ``SoTRAG`` for more than one."""
    with SoTRAG(model=model) as qa:
        return qa.answer(question, **kwargs)
