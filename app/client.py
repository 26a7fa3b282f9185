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
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from pydantic import ValidationError

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
        model: str | os.PathLike[str] | None = None,
        index_dir: str | os.PathLike[str] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = _checked_settings(settings, model=model, index_dir=index_dir)
        self._engine = engine
        self._pipeline: SoTPipeline | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sotrag-engine-loop", daemon=True)
        self._thread.start()
        self._start_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        """A closed client's loop is stopped: a call submitted to it would wait forever, so it fails at once."""
        if self._closed or not self._loop.is_running():
            raise ClientClosed("the SoTRAG client is closed; create a new one")

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        try:
            self._check_open()
        except ClientClosed:
            coro.close()  # never awaited: closed here, so Python does not warn about it
            raise
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def start(self) -> SoTPipeline:
        """Start the engine (and open the index) now; otherwise the first question does it."""
        self._check_open()
        with self._start_lock:
            if self._pipeline is None:
                self._pipeline = self._submit(self._create_pipeline()).result()
        return self._pipeline

    async def _create_pipeline(self) -> SoTPipeline:
        from sotrag.app.factory import create_pipeline

        return await create_pipeline(self.settings, engine=self._engine)

    def close(self) -> None:
        """Shut the engine down and stop the loop thread; closing twice is harmless, and any later call raises
        ``ClientClosed``."""
        with self._start_lock:
            pipeline, self._pipeline = self._pipeline, None
            already, self._closed = self._closed, True
        try:
            if pipeline is not None and not already and self._loop.is_running():
                asyncio.run_coroutine_threadsafe(pipeline.engine.aclose(), self._loop).result()
        finally:  # an engine that fails to shut down still leaves no loop thread behind
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
        """Yield the answer's events as they happen, from synchronous code (a closed client raises here, not at
        the first event)."""
        return self._stream(self.start(), question, kwargs)

    def _stream(self, pipeline: SoTPipeline, question: str | AnswerRequest, kwargs: dict[str, Any]) -> Iterator[Event]:
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
            if self._loop.is_running():  # closed meanwhile: the loop that ran the stream is gone with it
                asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop).result()

    async def aanswer(self, question: str | AnswerRequest, **kwargs: Any) -> AnswerResult:
        self._check_open()
        async for event in self.astream(question, **kwargs):
            if isinstance(event, AnswerDone):
                return event.result
        raise RuntimeError("the answer stream ended without a result")  # pragma: no cover

    def astream(self, question: str | AnswerRequest, **kwargs: Any) -> AsyncIterator[Event]:
        """Yield the answer's events inside the caller's event loop (a closed client raises here)."""
        self._check_open()
        return self._astream(question, kwargs)

    async def _astream(self, question: str | AnswerRequest, kwargs: dict[str, Any]) -> AsyncIterator[Event]:
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


class ClientClosed(RuntimeError):
    """A ``SoTRAG`` client used after ``close()``."""


_SETTINGS_KEYWORDS = {"model": ("engine", "model"), "index_dir": ("index_dir",)}


def _checked_settings(settings: object, *, model: object, index_dir: object) -> Settings:
    """The settings the client runs with, every argument checked here (``model_copy`` checks nothing): a wrong
    type or value is a ``TypeError``/``ValueError`` naming the argument now, not an AttributeError at the first
    question."""
    if settings is None:
        settings = Settings()
    elif not isinstance(settings, Settings):
        raise TypeError(
            f"settings must be a sotrag Settings, not {type(settings).__name__} "
            "(pass a model as SoTRAG(model=...), a folder as SoTRAG(index_dir=...))"
        )
    model_text, index_text = _path_text("model", model), _path_text("index_dir", index_dir)
    if model_text is None and index_text is None:
        return settings
    data = settings.model_dump()
    if model_text is not None:
        data["engine"]["model"] = model_text
    if index_text is not None:
        data["index_dir"] = index_text
    try:
        return type(settings).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None


def _path_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return path if isinstance(path, str) else os.fsdecode(path)
    raise TypeError(f"{name} must be a string or a path, not {type(value).__name__}")


async def _until_end(queue: asyncio.Queue[Any]) -> None:
    while await queue.get() is not _END:
        pass


def answer(question: str, *, model: str | None = None, **kwargs: Any) -> AnswerResult:
    """One question, one answer: starts an engine, answers, shuts it down. Use ``SoTRAG`` for more than one."""
    with SoTRAG(model=model) as qa:
        return qa.answer(question, **kwargs)
