"""What the REST API, the OpenAI-compatible route and the Gradio UI share: the engine, the index, the answers
in flight and the document operations.

Why the answer runs in its own task: when a client disconnects, the web framework cancels the response with
an anyio cancel scope, which cancels *every* await in it again and again, so cleanup code that awaits (the
engine's ``abort``) could be cut short. The pipeline therefore streams into a queue from a task of its own;
the response only reads the queue, and when it stops early it cancels that task exactly once, which lets the
pipeline abort all of its engine requests undisturbed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sotrag.app.config import Settings
from sotrag.app.engines.base import Engine
from sotrag.app.events import AnswerDone, AnswerResult, Event, RequestedMode
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.api_models import AnswerResponse, DocumentOut, FileOutcome, IndexStatus, UploadResponse
from sotrag.app.serving.metrics import Metrics

log = logging.getLogger("sotrag.server")

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOADS_FOLDER = "uploads"


class NotReady(RuntimeError):
    """The engine (or index) is still starting, or failed to start; the message says which."""


class NoIndex(RuntimeError):
    """Documents were asked for but the server has no index."""


class AnswerFailed(RuntimeError):
    """The answer broke after it started (engine error); the message is user-facing."""


class UnsupportedDocument(ValueError):
    pass


class DocumentTooLarge(ValueError):
    pass


class DocumentRejected(ValueError):
    """The file was read but nothing could be indexed from it (empty, unreadable PDF, ...)."""


class UnknownDocument(LookupError):
    pass


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
    _owns_engine: bool = False
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the index and start the engine; never raises (the failure is kept for /readyz and the UI)."""
        try:
            if self.index is None and self.index_dir is not None:
                self.index = await asyncio.to_thread(self._open_index)
            if self.pipeline is None:
                from sotrag.app.factory import create_pipeline

                self.pipeline = await create_pipeline(self.settings, retriever=self.index)
                self._owns_engine = True
            elif self.index is not None and self.pipeline.retriever is None:
                self.pipeline.retriever = self.index
            self.state = "ready"
            self.metrics.ready.set(1)
            log.info("sotrag is ready: model %s, index %s", self.pipeline.engine.model_name, self.index_dir)
        except Exception as exc:  # reported on /readyz and in the UI; the log has the details
            self.state = "failed"
            self.error = _one_line(exc)
            log.error("sotrag could not start: %s", self.error)
            log.debug("start failure", exc_info=True)
        finally:
            self._ready.set()

    def _open_index(self) -> Any:
        from sotrag.retrieval.index import DocumentIndex

        assert self.index_dir is not None
        index = DocumentIndex.open(self.index_dir, create=True)
        sources = [p for p in self.demo_sources if p.exists()]
        if sources:
            summary = index.ingest(sources)
            log.info("demo index %s: %s", self.index_dir, summary.counts)
        return index

    async def wait_started(self) -> None:
        await self._ready.wait()

    async def stop(self) -> None:
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
        if self.state == "failed":
            raise NotReady(f"the engine failed to start: {self.error}")
        if self.pipeline is None or self.state != "ready":
            raise NotReady("the engine is still starting; try again in a moment (see /readyz)")
        return self.pipeline

    def unfinished_engine_requests(self) -> int | None:
        engine = self.engine
        count = getattr(engine, "num_unfinished_requests", None)
        return int(count()) if callable(count) else None

    def index_status(self) -> IndexStatus | None:
        if self.index is None:
            return None
        stats = self.index.stats()
        return IndexStatus(
            directory=str(stats["directory"]),
            documents=int(stats["documents"]),
            chunks=int(stats["chunks"]),
            embedding_model=str(stats["embedding_model"]),
        )

    def refresh_metrics(self) -> None:
        engine = self.engine
        self.metrics.refresh_engine(
            self.unfinished_engine_requests if engine is not None else None,
            engine.load if engine is not None else None,
        )
        policy = getattr(getattr(self.pipeline, "router", None), "policy", None)
        if policy is not None and hasattr(policy, "refusing"):
            self.metrics.load_refusing.set(1 if policy.refusing else 0)

    # -- answers ----------------------------------------------------------------------------------------

    def answer(
        self,
        question: str,
        *,
        surface: str,
        mode: RequestedMode = "auto",
        history: Sequence[tuple[str, str]] = (),
        top_k: int | None = None,
        filters: dict[str, str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AnswerRun:
        """Validate now (raises ``InvalidQuestion``/``NotReady`` before anything streams), run on iteration."""
        pipeline = self.require_pipeline()
        question = pipeline.validate(question)
        sampling = self.settings.sampling
        updates: dict[str, Any] = {}
        if max_tokens is not None:
            updates["normal_max_tokens"] = max_tokens
            updates["point_max_tokens"] = max_tokens
            updates["point_min_tokens"] = min(sampling.point_min_tokens, max_tokens)
            updates["normal_min_tokens"] = min(sampling.normal_min_tokens, max_tokens)
        if temperature is not None:
            updates["temperature"] = temperature
        kwargs: dict[str, Any] = {
            "mode": mode,
            "history": tuple(history),
            "top_k": top_k,
            "filters": filters,
            "sampling": sampling.model_copy(update=updates) if updates else None,
        }
        return AnswerRun(self, pipeline, question, kwargs, surface)

    def response_for(self, result: AnswerResult, top_k: int | None) -> AnswerResponse:
        k = self.settings.top_k if top_k is None else top_k
        return AnswerResponse(
            **result.model_dump(),
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
        index = self.require_index()
        return [_document_out(d) for d in index.list_documents()]

    def check_upload(self, filename: str | None, size: int | None = None) -> str:
        """The safe file name for an upload, or ``UnsupportedDocument``/``DocumentTooLarge``."""
        from sotrag.retrieval.loaders import SUPPORTED_SUFFIXES, file_kind

        name = _safe_name(filename or "")
        if not name or file_kind(Path(name)) is None:
            kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise UnsupportedDocument(f"unsupported file type {Path(name).suffix or '(none)'!s}; supported: {kinds}")
        if size is not None and size > self.max_upload_bytes:
            raise DocumentTooLarge(f"the file is {size} bytes, over the upload limit of {self.max_upload_bytes} bytes")
        return name

    async def add_documents(self, files: Sequence[tuple[str, Path]]) -> UploadResponse:
        """Ingest uploaded files (``(safe name, temporary path)``) into the index; one writer at a time."""
        index = self.require_index()
        start = time.perf_counter()
        uploads = Path(index.directory) / UPLOADS_FOLDER
        async with self._write_lock:
            await asyncio.to_thread(uploads.mkdir, parents=True, exist_ok=True)
            targets = []
            for name, tmp in files:
                target = uploads / name
                await asyncio.to_thread(shutil.move, tmp, target)
                targets.append(target)
            summary = await asyncio.to_thread(index.ingest, targets)
        outcomes = [
            FileOutcome(source=f.source, status=f.status, reason=f.reason, chunks=f.chunks) for f in summary.files
        ]
        bad = [o for o in outcomes if o.status in ("skipped", "failed")]
        if bad and len(bad) == len(outcomes):
            for target in targets:
                target.unlink(missing_ok=True)
            raise DocumentRejected("; ".join(f"{o.source}: {o.reason}" for o in bad))
        names = {t.name for t in targets}
        documents = [_document_out(d) for d in index.list_documents() if d.source in names]
        return UploadResponse(files=outcomes, documents=documents, seconds=round(time.perf_counter() - start, 3))

    async def remove_document(self, doc_id: str) -> list[DocumentOut]:
        index = self.require_index()
        async with self._write_lock:
            match = [d for d in index.list_documents() if d.doc_id == doc_id]
            if not match:
                raise UnknownDocument(f"no document with id {doc_id!r}")
            removed = await asyncio.to_thread(index.remove, doc_id)
            uploads = (Path(index.directory) / UPLOADS_FOLDER).resolve()
            for d in removed:
                path = Path(d.path).resolve()
                if path.parent == uploads:  # only files this server stored; never the user's own folders
                    path.unlink(missing_ok=True)
        return [_document_out(d) for d in removed]


class AnswerRun:
    """One answer: iterate ``events()`` to run it; stopping early cancels it and aborts its engine requests."""

    def __init__(
        self, service: Service, pipeline: SoTPipeline, question: str, kwargs: dict[str, Any], surface: str
    ) -> None:
        self.service = service
        self.pipeline = pipeline
        self.question = question
        self.kwargs = kwargs
        self.surface = surface
        self.result: AnswerResult | None = None

    async def events(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for event in self.pipeline.stream(self.question, **self.kwargs):
                    queue.put_nowait(event)
                queue.put_nowait(_END)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                queue.put_nowait(_Failed(exc))

        metrics = self.service.metrics
        task = asyncio.create_task(produce(), name=f"sotrag-answer-{self.surface}")
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
                    log.error("an answer failed: %s", _one_line(item.error), exc_info=item.error)
                    raise AnswerFailed(f"the answer failed: {_one_line(item.error)}")
                if isinstance(item, AnswerDone):
                    self.result = item.result
                    metrics.observe_answer(item.result)
                yield item
        finally:
            if not task.done():
                task.cancel()  # once: the pipeline's own cleanup aborts every engine request of this answer
            metrics.in_flight.dec()
            self.service.answers_in_flight -= 1
            used = self.result.mode if self.result is not None else "none"
            metrics.answers.labels(self.surface, self.kwargs["mode"], used, outcome).inc()

    async def run(self) -> AnswerResult:
        async for _ in self.events():
            pass
        if self.result is None:  # pragma: no cover - the pipeline always ends with AnswerDone
            raise AnswerFailed("the answer ended without a result")
        return self.result


def _document_out(d: Any) -> DocumentOut:
    return DocumentOut(
        doc_id=d.doc_id, source=d.source, title=d.title, kind=d.kind, chunks=d.chunks, size=d.size,
        ingested_at=d.ingested_at,
    )


def _safe_name(filename: str) -> str:
    """The last path component, with anything but letters, digits, ``._-`` and spaces replaced."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = re.sub(r"[^\w.\- ]", "_", name).lstrip(".")
    return name[:200]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
