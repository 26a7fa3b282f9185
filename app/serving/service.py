"""What the REST API, the OpenAI-compatible route and the Gradio UI share: the engine, the index and the answers
in flight (the document operations are ``documents.Documents``; the errors ``errors``).

Why the answer runs in its own task: when a client disconnects, the web framework cancels the response with
an anyio cancel scope, which cancels *every* await in it again and again, so cleanup code that awaits (the
engine's ``abort``) could be cut short. The pipeline therefore streams into a queue from a task of its own;
the response only reads the queue, and when it stops early it cancels that task exactly once, which lets the
pipeline abort all of its engine requests undisturbed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sotrag.app.config import SamplingConfig, Settings
from sotrag.app.engines.base import Engine, EngineError, EngineRejected, engine_health, with_defaults
from sotrag.app.events import AnswerDone, AnswerResult, Event
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import AnswerRequest, InvalidQuestion, ValidatedRequest, sampling_with
from sotrag.app.serving.api_models import AnswerResponse, DocumentOut, IndexStatus, UploadResponse
from sotrag.app.serving.documents import DEFAULT_MAX_UPLOAD_BYTES, Documents
from sotrag.app.serving.errors import (
    AnswerFailed,
    DocumentConflict,
    DocumentRejected,
    DocumentTooLarge,
    NoIndex,
    NotReady,
    StorageUnavailable,
    UnknownDocument,
    UnsupportedDocument,
)
from sotrag.app.serving.limits import AnswerLimiter, AnswerTimeout, Ticket
from sotrag.app.serving.metrics import Metrics
from sotrag.app.serving.validation import check_lengths, public_message, public_model_name

__all__ = [  # the errors are imported from here by older code
    "AnswerFailed",
    "AnswerRun",
    "DocumentConflict",
    "DocumentRejected",
    "DocumentTooLarge",
    "NoIndex",
    "NotReady",
    "Service",
    "StorageUnavailable",
    "UnknownDocument",
    "UnsupportedDocument",
    "freeze_startup_heap",
]

log = logging.getLogger("sotrag.server")

ENGINE_DIED = "the engine stopped unexpectedly; the server is restarting, try again in a moment"
HEALTH_POLL_S = 0.5


@dataclass
class _Failed:
    error: BaseException


_END = object()


def grounding_note(result: AnswerResult, has_index: bool, top_k: int) -> str | None:
    if result.sources:
        return None
    if not has_index:
        return "no document index is configured: the answer is not grounded in documents"
    if top_k == 0:
        return "retrieval was turned off (top_k=0): the answer is not grounded in documents"
    return "no passages were found (the index is empty or nothing matched): the answer is not grounded"


@dataclass
class Service:
    """The server's state. ``start()`` brings up the engine and the index in the server's event loop."""

    settings: Settings
    pipeline: SoTPipeline | None = None
    index: Any | None = None  # sotrag.retrieval.index.DocumentIndex (imported lazily: FAISS, torch)
    index_dir: Path | None = None
    metrics: Metrics = field(default_factory=Metrics)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    demo_sources: Sequence[Path] = ()  # ingested into the index at start (the demo index)
    state: Literal["starting", "ready", "failed"] = "starting"
    error: str | None = None
    answers_in_flight: int = 0
    limiter: AnswerLimiter | None = None
    engine_died: asyncio.Event = field(default_factory=asyncio.Event)  # set once: the engine cannot serve any more
    _owns_engine: bool = False
    _index_status: IndexStatus | None = None
    _watcher: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle --------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = AnswerLimiter(self.settings.limits)
        self.documents = Documents(self.max_upload_bytes, self.refresh_index_status)

    async def start(self) -> None:
        """Open the index and start the engine; never raises (the failure is kept for /readyz and the UI).

        Every blocking step runs in a worker thread (index, vLLM import and engine start), so the event loop
        keeps answering ``/healthz`` and ``/readyz`` ("starting") for the whole start."""
        try:
            if self.index is None and self.index_dir is not None:
                self.index = await asyncio.to_thread(self._open_index)
            if self.index is not None:
                await asyncio.to_thread(self.refresh_index_status)
            if self.pipeline is None:
                from sotrag.app.factory import create_pipeline

                self.pipeline = await create_pipeline(self.settings, retriever=self.index)
                self._owns_engine = True
                # The trained router's encoder loads in seconds once built, but its first build (the int8 ONNX
                # encoder, docs/router.md) is slow: do it before "ready", not in the first auto answer.
                if self.pipeline.router is not None:
                    await asyncio.to_thread(self.pipeline.router.warm_up)
            elif self.index is not None and self.pipeline.retriever is None:
                self.pipeline.retriever = self.index
            freeze_startup_heap()
            self.state = "ready"
            self.metrics.ready.set(1)
            self._watcher = asyncio.create_task(self._watch_engine(), name="sotrag-engine-watch")
            log.info("sotrag is ready: model %s, index %s", self.pipeline.engine.model_name, self.index_dir)
        except Exception as exc:  # reported on /readyz and in the UI; the log has the details
            self.state = "failed"
            # Shown on /readyz and to clients: an engine error's public line (no server URL or server's text)
            self.error = exc.public if isinstance(exc, EngineError) else _one_line(exc)
            log.error("sotrag could not start: %s", _one_line(exc))
            log.debug("start failure", exc_info=True)
        finally:
            self._ready.set()

    def _open_index(self) -> Any:
        from sotrag.app.factory import open_index

        assert self.index_dir is not None
        index: Any = open_index(str(self.index_dir), self.settings, create=True)
        sources = [p for p in self.demo_sources if p.exists()]
        if sources:
            summary = index.ingest(sources)
            log.info("demo index %s: %s", self.index_dir, summary.counts)
        return index

    async def wait_started(self) -> None:
        await self._ready.wait()

    async def _watch_engine(self) -> None:
        """Poll the engine's health (cheap: a flag vLLM's monitor thread sets when the engine process dies)."""
        assert self.pipeline is not None
        while self.state == "ready":
            health = await engine_health(self.pipeline.engine)
            if not health.alive:
                self.mark_engine_dead(health.detail)
                return
            await asyncio.sleep(HEALTH_POLL_S)

    def mark_engine_dead(self, detail: str | None = None) -> None:
        """Not ready from now on: /readyz 503 with the reason, ``sotrag_ready`` 0, new answers 503. The server
        (``sotrag serve``) then exits non-zero after a short grace, for its supervisor to restart it."""
        if self.engine_died.is_set():
            return
        self.state = "failed"
        self.error = ENGINE_DIED
        self.metrics.ready.set(0)
        self.engine_died.set()
        log.error("the engine died (%s); reporting not ready", detail or "no detail")

    async def check_engine(self) -> bool:
        """True when the engine can still serve; marks it dead otherwise (called when an answer fails)."""
        if self.pipeline is None or self.engine_died.is_set():
            return not self.engine_died.is_set()
        health = await engine_health(self.pipeline.engine)
        if not health.alive:
            self.mark_engine_dead(health.detail)
        return health.alive

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_engine and self.pipeline is not None:
            await self.pipeline.engine.aclose()
        if self.index is not None and hasattr(self.index, "close"):
            self.index.close()

    # -- status -----------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        return self.pipeline.engine if self.pipeline is not None and self.state == "ready" else None

    def require_pipeline(self) -> SoTPipeline:
        if self.engine_died.is_set():
            raise NotReady(ENGINE_DIED)
        if self.state == "failed":
            raise NotReady(f"the engine failed to start: {self.error}")
        if self.pipeline is None or self.state != "ready":
            raise NotReady("the engine is still starting; try again in a moment (see /readyz)")
        return self.pipeline

    def unfinished_engine_requests(self) -> int | None:
        return with_defaults(self.engine).num_unfinished_requests() if self.engine is not None else None

    def engine_servers(self) -> list[dict[str, Any]] | None:
        """A remote engine's servers (up or down, with why); None for an engine without servers."""
        return with_defaults(self.engine).servers() if self.engine is not None else None

    def index_status(self) -> IndexStatus | None:
        return self.documents.status(self.index) if self.index is not None else None

    def refresh_index_status(self) -> None:
        """Recount the index (blocking: call in a thread) so /readyz can answer without touching it."""
        self._index_status = self.index_status()

    @property
    def cached_index_status(self) -> IndexStatus | None:
        return self._index_status

    def may_write_documents(self) -> str | None:
        """None when the UI may upload/delete; else why not (read-only, or writes need the admin key)."""
        if self.settings.server.read_only:
            return "this server is read-only: documents cannot be added or removed"
        if self.settings.admin_api_key is not None:
            return "adding or removing documents needs the admin key: use the REST API with it"
        return None

    def refresh_metrics(self) -> None:
        engine = self.engine
        self.metrics.refresh_engine(
            self.unfinished_engine_requests if engine is not None else None,
            engine.load if engine is not None else None,
        )
        self.metrics.refresh_router(self.pipeline.router if self.pipeline is not None else None)

    # -- answers ----------------------------------------------------------------------------------------

    def sampling_for(
        self, *, max_tokens: int | None = None, temperature: float | None = None, **fields: Any
    ) -> SamplingConfig | None:
        """A client's sampling options over the server's (``fields``: more ``SamplingConfig`` fields, such as the
        OpenAI route's seed, top_p, stop, response_format): ``InvalidQuestion`` for a ``max_tokens`` over this
        server's limit; None when the client set none."""
        limit = self.settings.limits.max_tokens
        if max_tokens is not None and max_tokens > limit:
            raise InvalidQuestion(f"max_tokens is {max_tokens}, over this server's limit of {limit}")
        return sampling_with(self.settings.sampling, max_tokens=max_tokens, temperature=temperature, **fields)

    async def answer(self, request: AnswerRequest, *, surface: str) -> AnswerRun:
        """Validate and admit now (raises ``InvalidQuestion``/``NotReady``/``Busy`` before anything streams), run on
        iteration. The limits apply to every surface alike: this is the one way in."""
        pipeline = self.require_pipeline()
        assert self.limiter is not None
        self.limiter.check()  # refuse an overload before spending anything on it (tokenizing, validating)
        check_lengths(request.question, request.history, self.settings.limits)
        try:
            validated = await pipeline.validate(request)  # the one tokenization of the question (and history)
        except EngineError as exc:  # every surface (the UI too) sees its public line; the log keeps the rest
            log.warning("an answer could not be checked: %s", _one_line(exc))
            if isinstance(exc, EngineRejected):
                raise InvalidQuestion(f"invalid request: {exc.public}") from exc
            raise NotReady(exc.public) from exc
        run = AnswerRun(self, pipeline, validated, surface)
        run.ticket = self.limiter.admit(run)  # Busy (429) when every slot and queue place is taken
        return run

    def response_for(self, result: AnswerResult) -> AnswerResponse:
        k = self.settings.passages_k if result.passages_k is None else result.passages_k
        return AnswerResponse(
            **{**result.model_dump(), "model": public_model_name(result.model)},
            grounded=bool(result.sources),
            grounding_note=grounding_note(result, self.index is not None, k),
        )

    # -- documents --------------------------------------------------------------------------------------

    def require_index(self) -> Any:
        if self.index is None:
            if self.state == "starting" and self.index_dir is not None:
                raise NotReady("the document index is still loading; try again in a moment")
            raise NoIndex("this server has no document index (start it with --index DIR)")
        return self.index

    def list_documents(self) -> list[DocumentOut]:
        return self.documents.list_documents(self.require_index())

    def check_upload(self, filename: str | None, size: int | None = None) -> str:
        """The safe file name for an upload, or ``UnsupportedDocument``/``DocumentTooLarge``."""
        return self.documents.check_upload(filename, size)

    async def add_documents(self, files: Sequence[tuple[str, Path]]) -> UploadResponse:
        """Ingest uploaded files (``(safe name, temporary path)``) into the index (``Documents.add``)."""
        return await self.documents.add(self.require_index(), files)

    async def remove_document(self, doc_id: str) -> list[DocumentOut]:
        return await self.documents.remove(self.require_index(), doc_id)


class AnswerRun:
    """One answer: iterate ``events()`` to run it; stopping early cancels it and aborts its engine requests."""

    def __init__(self, service: Service, pipeline: SoTPipeline, request: ValidatedRequest, surface: str) -> None:
        self.service = service
        self.pipeline = pipeline
        self.request = request
        self.surface = surface
        self.result: AnswerResult | None = None
        self.ticket: Ticket | None = None

    async def events(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        timeout_s = self.service.settings.limits.answer_timeout_s

        expired: list[bool] = []

        async def produce() -> None:
            try:
                async for event in self.pipeline.stream(self.request):
                    queue.put_nowait(event)
                queue.put_nowait(_END)
            except asyncio.CancelledError:
                if not expired:
                    raise
                # Past the time limit: the pipeline's cleanup has aborted every engine request by now.
                queue.put_nowait(_Failed(AnswerTimeout(f"the answer took longer than the limit of {timeout_s:g} s")))
            except Exception as exc:
                queue.put_nowait(_Failed(exc))

        def expire() -> None:
            if not task.done():
                expired.append(True)
                task.cancel()

        ticket = self.ticket
        try:
            if ticket is not None:
                await ticket.acquire_slot()
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        metrics = self.service.metrics
        task = asyncio.create_task(produce(), name=f"sotrag-answer-{self.surface}")
        timer = asyncio.get_running_loop().call_later(timeout_s, expire)
        self.service._tasks.add(task)
        task.add_done_callback(self.service._tasks.discard)
        metrics.in_flight.inc()
        self.service.answers_in_flight += 1
        outcome = "cancelled"
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    outcome = "ok"
                    return
                if isinstance(item, _Failed):
                    outcome = "error"
                    raise await self._failure(item.error)
                if isinstance(item, AnswerDone):
                    self.result = item.result
                    metrics.observe_answer(item.result)
                yield item
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()  # once: the pipeline's own cleanup aborts every engine request of this answer
            if ticket is not None:
                ticket.release()
            metrics.in_flight.dec()
            self.service.answers_in_flight -= 1
            used = self.result.mode if self.result is not None else "none"
            metrics.count_answer(self.surface, self.request.request.mode, used, outcome)

    async def _failure(self, error: BaseException) -> AnswerFailed:
        """What the client is told: a reason that names no internals, and the status a non-streamed answer gets."""
        if isinstance(error, AnswerTimeout):
            log.warning("an answer was stopped: %s", error)
            return AnswerFailed(str(error), 504)
        if not await self.service.check_engine():
            log.error("an answer failed because the engine died: %s", _one_line(error))
            return AnswerFailed(f"the answer failed: {ENGINE_DIED}", 503)
        if isinstance(error, (InvalidQuestion, ValueError)):  # bad input found late (e.g. in retrieval)
            log.warning("an answer was refused: %s", _one_line(error))
            return AnswerFailed(f"invalid request: {public_message(error)}", 422)
        if isinstance(error, EngineError):  # user-facing by contract, less the server URLs (the log keeps them)
            public = public_message(EngineError(error.public))
            if error.status < 500:  # a vLLM server refused one of the client's values
                log.warning("an answer was refused by the engine: %s", _one_line(error))
                param = getattr(error, "param", None)
                where = f" ({param})" if param and param not in public else ""
                return AnswerFailed(f"invalid request{where}: {public}", error.status)
            log.error("an answer failed: %s", _one_line(error), exc_info=error if error.status == 500 else None)
            return AnswerFailed(f"the answer failed: {public}", error.status)
        log.error("an answer failed: %s", _one_line(error), exc_info=error)
        return AnswerFailed("the answer failed: an internal error (the server log has the details)")

    async def run(self) -> AnswerResult:
        async for _ in self.events():
            pass
        if self.result is None:  # pragma: no cover - the pipeline always ends with AnswerDone
            raise AnswerFailed("the answer ended without a result")
        return self.result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def freeze_startup_heap() -> None:
    """Move everything alive now into the collector's permanent generation (``gc.freeze``), as vLLM's own
    OpenAI server does after its engine starts.

    Why: once vLLM, torch, the tokenizer, the router and the index are loaded, the process tracks hundreds of
    thousands of objects that live as long as it does. A full collection scans them all: a stall of the event loop
    that serves every answer and every probe (docs/BENCHMARKS.md, ``benchmarks/gc_pause.py``); frozen, they are
    never scanned.

    This runs on the event loop, at the moment the server turns ready, so it must not itself be that stall: it
    collects the young generations only (cheap) and freezes the rest. ``sotrag serve`` already did the one full
    collection (and froze the imported libraries) before it listened (``cli.serve``), so what an old-generation
    cycle of the engine's start leaves frozen is small (docs/RELIABILITY.md)."""
    gc.collect(1)
    gc.freeze()
