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
import contextlib
import gc
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sotrag.app.config import Settings
from sotrag.app.engines.base import Engine, EngineError, count_tokens_async, engine_health
from sotrag.app.events import AnswerDone, AnswerResult, Event, RequestedMode
from sotrag.app.pipeline import InvalidQuestion, SoTPipeline
from sotrag.app.serving.api_models import AnswerResponse, DocumentOut, FileOutcome, IndexStatus, UploadResponse
from sotrag.app.serving.limits import AnswerLimiter, AnswerTimeout, Ticket
from sotrag.app.serving.metrics import Metrics
from sotrag.app.serving.validation import check_context, check_lengths, public_message, public_model_name

log = logging.getLogger("sotrag.server")

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOADS_FOLDER = "uploads"


class NotReady(RuntimeError):
    """The engine (or index) is still starting, or failed to start; the message says which."""


class NoIndex(RuntimeError):
    """Documents were asked for but the server has no index."""


class AnswerFailed(RuntimeError):
    """The answer broke after it started; the message is user-facing. ``status``: what a non-streamed answer gets
    (422 for bad input found late, 503 when the engine died, 504 past the time limit, else 500)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


ENGINE_DIED = "the engine stopped unexpectedly; the server is restarting, try again in a moment"
HEALTH_POLL_S = 0.5


class UnsupportedDocument(ValueError):
    pass


class DocumentTooLarge(ValueError):
    pass


class DocumentRejected(ValueError):
    """The file was read but nothing could be indexed from it (empty, unreadable PDF, ...)."""


class UnknownDocument(LookupError):
    pass


class DocumentConflict(ValueError):
    """Two files of one upload would be stored under the same name (409): nothing is written."""


class StorageUnavailable(RuntimeError):
    """The index cannot be written (disk full, read-only folder): nothing was changed (507)."""


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
    _write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle --------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = AnswerLimiter(self.settings.limits)

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
                # The trained router's encoder loads in seconds once built, but its first build takes ~20 s of
                # CPU: do it before "ready", not in the first auto answer.
                warm_up = getattr(getattr(self.pipeline.router, "classifier", None), "warm_up", None)
                if callable(warm_up):
                    await asyncio.to_thread(warm_up)
            elif self.index is not None and self.pipeline.retriever is None:
                self.pipeline.retriever = self.index
            freeze_startup_heap()
            self.state = "ready"
            self.metrics.ready.set(1)
            self._watcher = asyncio.create_task(self._watch_engine(), name="sotrag-engine-watch")
            log.info("sotrag is ready: model %s, index %s", self.pipeline.engine.model_name, self.index_dir)
        except Exception as exc:  # reported on /readyz and in the UI; the log has the details
            self.state = "failed"
            self.error = _one_line(exc)
            log.error("sotrag could not start: %s", self.error)
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
        engine = self.engine
        count = getattr(engine, "num_unfinished_requests", None)
        return int(count()) if callable(count) else None

    def engine_servers(self) -> list[dict[str, Any]] | None:
        """A remote engine's servers (up or down, with why); None for an engine without servers."""
        servers = getattr(self.engine, "servers", None)
        return list(servers()) if callable(servers) else None

    def index_status(self) -> IndexStatus | None:
        if self.index is None:
            return None
        stats = self.index.stats()
        return IndexStatus(
            documents=int(stats["documents"]),
            chunks=int(stats["chunks"]),
            embedding_model=str(stats["embedding_model"]),
        )

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
        self.metrics.refresh_router(getattr(self.pipeline, "router", None))

    # -- answers ----------------------------------------------------------------------------------------

    async def answer(
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
        sampling_update: dict[str, Any] | None = None,
    ) -> AnswerRun:
        """Validate and admit now (raises ``InvalidQuestion``/``NotReady``/``Busy`` before anything streams), run on
        iteration. The limits apply to every surface alike: this is the one way in. ``sampling_update``: more
        ``SamplingConfig`` fields for this answer (the OpenAI route's seed, top_p, stop, response_format)."""
        pipeline = self.require_pipeline()
        assert self.limiter is not None
        self.limiter.check()  # refuse an overload before spending anything on it (tokenizing, validating)
        limits = self.settings.limits
        check_lengths(question, history, limits)
        question = await pipeline.avalidate(question)  # async: a remote engine may count through its server
        if history:
            engine = pipeline.engine
            history_tokens = 0
            for q, a in history:
                history_tokens += await count_tokens_async(engine, q) + await count_tokens_async(engine, a)
            check_context(await count_tokens_async(engine, question), history_tokens, engine.max_model_len)
        if max_tokens is not None and max_tokens > limits.max_tokens:
            raise InvalidQuestion(f"max_tokens is {max_tokens}, over this server's limit of {limits.max_tokens}")
        sampling = self.settings.sampling
        updates: dict[str, Any] = {}
        if max_tokens is not None:
            updates["normal_max_tokens"] = max_tokens
            updates["point_max_tokens"] = max_tokens
            updates["point_min_tokens"] = min(sampling.point_min_tokens, max_tokens)
            updates["normal_min_tokens"] = min(sampling.normal_min_tokens, max_tokens)
        if temperature is not None:
            updates["temperature"] = temperature
        updates.update(sampling_update or {})
        kwargs: dict[str, Any] = {
            "mode": mode,
            "history": tuple(history),
            "top_k": top_k,
            "filters": filters,
            "sampling": sampling.model_copy(update=updates) if updates else None,
        }
        run = AnswerRun(self, pipeline, question, kwargs, surface)
        run.ticket = self.limiter.admit(run)  # Busy (429) when every slot and queue place is taken
        return run

    def response_for(self, result: AnswerResult, top_k: int | None) -> AnswerResponse:
        k = self.settings.top_k if top_k is None else top_k
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
        """Ingest uploaded files (``(safe name, temporary path)``) into the index; one writer at a time.

        Uploads live in their own namespace: source ``uploads/NAME``, stored as ``<index>/uploads/NAME``, so
        they never replace a document ingested from the user's folders. Re-uploading a name updates that
        upload. A file is moved into place only after its ingest committed: a rejected file (empty, binary,
        unreadable) changes neither the stored file nor the index, and a rejected upload changes nothing.
        """
        from sotrag.retrieval.errors import IndexWriteError
        from sotrag.retrieval.loaders import FoundFile

        index = self.require_index()
        start = time.perf_counter()
        names = [name for name, _ in files]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise DocumentConflict(f"two files of this upload would both be stored as {clash[0]!r}; rename one")
        uploads = Path(index.directory) / UPLOADS_FOLDER
        async with self._write_lock:
            try:
                staged = await asyncio.to_thread(_stage_in_folder, uploads, files)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise StorageUnavailable(f"the upload cannot be stored: {reason}; nothing was changed") from None
            try:
                real = uploads.resolve()
                found = [
                    FoundFile(path=real / name, source=f"{UPLOADS_FOLDER}/{name}", root=real.parent, read_from=tmp)
                    for name, tmp in staged
                ]
                try:
                    summary = await asyncio.to_thread(index.add_files, found)
                except IndexWriteError as exc:
                    reason = exc.reason
                    raise StorageUnavailable(f"the index cannot be written: {reason}; nothing was changed") from None
                by_source = {f.source: f for f in summary.files}
                for f, (name, tmp) in zip(found, staged, strict=True):
                    outcome = by_source.get(f.source)
                    target = real / name
                    keep = outcome is not None and (
                        outcome.status in ("added", "updated")
                        or (outcome.status == "unchanged" and not target.exists())
                    )
                    if keep:  # rename within the folder: atomic, and needs no space
                        await asyncio.to_thread(os.replace, tmp, target)
            finally:
                for _, tmp in staged:
                    tmp.unlink(missing_ok=True)
            await asyncio.to_thread(self.refresh_index_status)
        outcomes = [
            FileOutcome(source=f.source, status=f.status, reason=f.reason, chunks=f.chunks) for f in summary.files
        ]
        bad = [o for o in outcomes if o.status in ("skipped", "failed")]
        if bad and len(bad) == len(outcomes):
            raise DocumentRejected("; ".join(f"{o.source}: {o.reason}" for o in bad))
        sources = {o.source for o in outcomes if o.status not in ("skipped", "failed")}
        documents = [_document_out(d) for d in index.list_documents() if d.source in sources]
        return UploadResponse(files=outcomes, documents=documents, seconds=round(time.perf_counter() - start, 3))

    async def remove_document(self, doc_id: str) -> list[DocumentOut]:
        index = self.require_index()
        async with self._write_lock:
            match = [d for d in index.list_documents() if d.doc_id == doc_id]
            if not match:
                raise UnknownDocument(f"no document with id {doc_id!r}")
            removed = await asyncio.to_thread(index.remove, doc_id)
            await asyncio.to_thread(self.refresh_index_status)
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
        self.ticket: Ticket | None = None

    async def events(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        timeout_s = self.service.settings.limits.answer_timeout_s

        expired: list[bool] = []

        async def produce() -> None:
            try:
                async for event in self.pipeline.stream(self.question, **self.kwargs):
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
            metrics.answers.labels(self.surface, self.kwargs["mode"], used, outcome).inc()

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
        log.error("an answer failed: %s", _one_line(error), exc_info=error)
        if isinstance(error, EngineError):  # user-facing by contract
            return AnswerFailed(f"the answer failed: {public_message(error)}")
        return AnswerFailed("the answer failed: an internal error (the server log has the details)")

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


STAGE_PREFIX = ".upload-"  # hidden: an ingest of the uploads folder never picks a half-stored upload up
STALE_STAGE_SECONDS = 3600


def _stage_in_folder(folder: Path, files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Copy each upload next to its final place (a hidden temp file), so that putting it in place later is a
    rename; also clears temp files a killed server left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob(f"{STAGE_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_STAGE_SECONDS:
                old.unlink()
    staged: list[tuple[str, Path]] = []
    try:
        for name, src in files:
            fd, tmp_name = tempfile.mkstemp(prefix=STAGE_PREFIX, suffix=".tmp", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            staged.append((name, tmp))
            shutil.copyfile(src, tmp)
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def _safe_name(filename: str) -> str:
    """The last path component, with anything but letters, digits, ``._-`` and spaces replaced."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = re.sub(r"[^\w.\- ]", "_", name).lstrip(".")
    return name[:200]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def freeze_startup_heap() -> None:
    """Move everything alive now into the collector's permanent generation (``gc.freeze``), as vLLM's own
    OpenAI server does after its engine starts.

    Why: once vLLM, torch, the tokenizer, the router and the index are loaded, the process tracks ~720k objects
    that live as long as it does. A full collection scans them all: 380-450 ms on the 2-core dev CPU with the
    tiny model, a stall of the event loop that serves every answer (on the GPU under load: 345-436 ms gen-2
    pauses before, at most 48 ms after, docs/BENCHMARKS.md). Frozen, a full collection costs < 0.01 ms on the
    dev CPU (``benchmarks/gc_pause.py``). Collect first, so no garbage is frozen."""
    gc.collect()
    gc.freeze()
