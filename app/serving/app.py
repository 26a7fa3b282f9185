"""The sotrag server: ONE FastAPI app with the REST API, the OpenAI-compatible route and the Gradio UI at ``/``.

The engine starts in the background inside the server's event loop (vLLM's AsyncLLM binds to the loop that
creates it), so ``/healthz`` answers at once and ``/readyz`` says when answers can be served.

Errors: every client error is JSON with a one-line ``detail`` (OpenAI's ``{"error": {...}}`` format on the
OpenAI routes); unexpected errors are logged here and reach the client as a 500 without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from sotrag import __version__
from sotrag.app.config import Settings
from sotrag.app.engines.base import EngineError
from sotrag.app.events import AnswerDone, Event
from sotrag.app.pipeline import InvalidQuestion, QuestionTooLong, SoTPipeline
from sotrag.app.serving.api_models import (
    AnswerRequest,
    AnswerResponse,
    DeleteResponse,
    DocumentList,
    ErrorEvent,
    ErrorResponse,
    Health,
    Readiness,
    ServerHealth,
    UploadResponse,
    sse_event_schema,
)
from sotrag.app.serving.disconnect import ClientDisconnected, run_unless_disconnected
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.metrics import HTTPMetricsMiddleware, Metrics
from sotrag.app.serving.security import SecurityMiddleware
from sotrag.app.serving.service import (
    AnswerFailed,
    AnswerRun,
    DocumentConflict,
    DocumentRejected,
    DocumentTooLarge,
    NoIndex,
    NotReady,
    Service,
    StorageUnavailable,
    UnknownDocument,
    UnsupportedDocument,
)
from sotrag.app.serving.validation import TextTooLong, public_message, public_model_name

log = logging.getLogger("sotrag.server")

API_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc")
# Routes answered in OpenAI's error format: sotrag's OpenAI routes, and OpenAI's others, which sotrag lacks (an
# OpenAI client asking for them gets a 404 it can read).
OPENAI_PREFIXES = (
    "/v1/chat/", "/v1/completions", "/v1/models", "/v1/embeddings", "/v1/responses", "/v1/moderations", "/v1/images",
    "/v1/audio", "/v1/files", "/v1/batches", "/v1/assistants", "/v1/threads", "/v1/fine_tuning", "/v1/vector_stores",
    "/v1/uploads", "/v1/realtime", "/v1/conversations",
)

SSE_DESCRIPTION = """With `stream=true`: a `text/event-stream` of the pipeline's typed events, one JSON object per
`data:` line, its `type` also in the `event:` line. Order: `sources` (when an index is configured), `route`
(mode `auto`), `skeleton_delta`..., `skeleton_done`, `point_started` x N, interleaved `point_delta`/`point_done`
(every point streams at the same time), `answer_done` (its `result` is an AnswerResponse). Normal decoding (or a
SoT `fallback`) streams `answer_delta` instead. A stream that fails after it started ends with an `error` event.
The schemas are in components: `SourcesEvent`, `RouteEvent`, `SkeletonDelta`, `SkeletonDone`, `PointStarted`,
`PointDelta`, `PointDone`, `FallbackEvent`, `AnswerDelta`, `AnswerDone`, `ErrorEvent`."""


def create_app(
    settings: Settings | None = None,
    pipeline: SoTPipeline | None = None,
    index: Any | None = None,
    *,
    index_dir: str | Path | None = None,
    demo_sources: Sequence[Path] = (),
    max_upload_bytes: int | None = None,
    ui: bool = True,
) -> FastAPI:
    """Build the app. ``pipeline``/``index`` given: used as they are (tests); else started from ``settings``.

    ``index_dir`` (default ``settings.index_dir``) is opened, created if missing; ``demo_sources`` are ingested
    into it at start (unchanged files are skipped, so only the first run embeds them).
    """
    settings = settings or Settings()
    if max_upload_bytes is None:
        max_upload_bytes = int(settings.limits.max_upload_mb * 2**20)
    directory = index_dir if index_dir is not None else settings.index_dir
    service = Service(
        settings=settings,
        pipeline=pipeline,
        index=index,
        index_dir=Path(directory).expanduser() if directory else None,
        metrics=Metrics(),
        max_upload_bytes=max_upload_bytes,
        demo_sources=tuple(demo_sources),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(service.start(), name="sotrag-start")
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            await service.stop()

    app = FastAPI(
        title="sotrag",
        version=__version__,
        description="Question answering over your documents, fast, with Skeleton-of-Thought parallel decoding "
        "on vLLM. REST (streaming), an OpenAI-compatible chat endpoint, and a web UI at `/`.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse, "description": "invalid request"}},
    )
    app.state.service = service
    _install_error_handlers(app)
    _add_routes(app, service)

    from sotrag.app.serving.openai_api import create_openai_router

    app.include_router(create_openai_router(service))
    _document_events_in_openapi(app)

    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    if ui:
        import gradio as gr

        from sotrag.app.serving.security import key_matches
        from sotrag.app.serving.ui import THEME_CSS, build_ui, theme

        def login(username: str, password: str) -> bool:
            return any(k is not None and key_matches(password, k) for k in (api_key, admin_key))

        blocks = build_ui(service)
        app = gr.mount_gradio_app(
            app, blocks, path="/", theme=theme(), css=THEME_CSS, footer_links=["api"], show_error=True,
            auth=login if api_key else None,
            auth_message="This sotrag server needs its API key: any user name, the key as password.",
        )
    # Outermost last: metrics see every response (401s included), then access control, then the size guard.
    app.add_middleware(_UploadSizeGuard, limit=max_upload_bytes)
    app.add_middleware(
        SecurityMiddleware,
        routes=app.router.routes,
        api_prefixes=API_PREFIXES,
        openai_prefixes=OPENAI_PREFIXES,
        api_key=api_key,
        admin_api_key=admin_key,
        read_only=settings.server.read_only,
        cors_origins=settings.server.cors_origins,
    )
    if settings.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.server.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(HTTPMetricsMiddleware, metrics=service.metrics, api_prefixes=API_PREFIXES)
    return app


# What the middleware and request parsing can answer, documented on the routes where they can happen.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "an API key is configured and none (or a wrong one) was sent"},
    403: {"model": ErrorResponse, "description": "a cross-site request, or a write that needs the admin key"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorResponse, "description": "the body could not be parsed (e.g. a broken multipart form)"},
    422: {"model": ErrorResponse, "description": "invalid request"},
}
INDEX_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "the server has no index"},
    503: {"model": ErrorResponse, "description": "the index is still loading"},
}


# -- routes --------------------------------------------------------------------------------------------


def _add_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", response_model=Health, tags=["status"], summary="The process is alive")
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["status"],
        summary="The engine and the index are loaded (503 until then)",
        responses={503: {"model": Readiness, "description": "starting, or failed to start"}},
    )
    async def readyz() -> JSONResponse:
        # Nothing here blocks or waits for a thread (the index counts are cached): a probe stays fast under load.
        engine = service.engine
        servers = service.engine_servers()
        servers_up = servers is None or any(s["up"] for s in servers)
        limiter = service.limiter
        body = Readiness(
            ready=service.state == "ready" and servers_up,
            engine=service.state,
            detail=(
                "starting: the engine and the index are loading"
                if service.state == "starting"
                else service.error or (None if servers_up else "no vLLM server is up")
            ),
            model=public_model_name(engine.model_name) if engine else None,
            max_model_len=engine.max_model_len if engine else None,
            index=service.cached_index_status if service.state == "ready" else None,
            answers_in_flight=service.answers_in_flight,
            answers_queued=limiter.queued if limiter else 0,
            engine_unfinished_requests=service.unfinished_engine_requests(),
            servers=[ServerHealth(**s) for s in servers] if servers is not None else None,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)

    @app.get("/metrics", tags=["status"], summary="Prometheus metrics", response_class=Response,
             responses=AUTH_ERRORS)
    async def metrics() -> Response:
        service.refresh_metrics()
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    @app.post(
        "/v1/answer",
        tags=["answer"],
        summary="Answer a question (JSON, or Server-Sent Events with stream=true)",
        response_model=AnswerResponse,
        responses={
            **BODY_ERRORS,
            200: {
                "description": "the answer (JSON), or with stream=true an event stream. " + SSE_DESCRIPTION,
                "content": {"text/event-stream": {"schema": sse_event_schema(json_data=True)}},
            },
            413: {"model": ErrorResponse, "description": "the question or history is over a limit or the context"},
            422: {"model": ErrorResponse, "description": "empty question or invalid request"},
            429: {"model": ErrorResponse, "description": "every answer slot and queue place is taken (Retry-After)"},
            503: {"model": ErrorResponse, "description": "the engine is not ready, or it stopped"},
            504: {"model": ErrorResponse, "description": "the answer ran past the server's time limit"},
        },
    )
    async def answer(body: AnswerRequest, request: Request) -> Any:
        run = await service.answer(
            body.question,
            surface="rest",
            mode=body.mode,
            history=[(t.question, t.answer) for t in body.history],
            top_k=body.top_k,
            filters={str(k): v for k, v in body.filters.items()} if body.filters is not None else None,
            max_tokens=body.max_tokens,
            temperature=body.temperature,
        )
        if body.stream:
            return StreamingResponse(
                _sse(run, service, body.top_k),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result = await run_unless_disconnected(run, request)
        return service.response_for(result, body.top_k)

    @app.get("/v1/documents", response_model=DocumentList, tags=["documents"], summary="Documents in the index",
             responses={**AUTH_ERRORS, **INDEX_ERRORS})
    async def list_documents() -> DocumentList:
        docs = await asyncio.to_thread(service.list_documents)
        status = await asyncio.to_thread(service.index_status)
        return DocumentList(documents=docs, chunks=status.chunks if status else 0)

    @app.post(
        "/v1/documents",
        response_model=UploadResponse,
        status_code=201,
        tags=["documents"],
        summary="Upload files (markdown, text, HTML, PDF) into the index",
        responses={
            **BODY_ERRORS,
            404: {"model": ErrorResponse, "description": "the server has no index"},
            409: {"model": ErrorResponse, "description": "two files of the upload have the same name"},
            413: {"model": ErrorResponse, "description": "a file is over the upload size limit"},
            415: {"model": ErrorResponse, "description": "unsupported file type"},
            422: {"model": ErrorResponse, "description": "nothing could be indexed from the files"},
            507: {"model": ErrorResponse, "description": "the index cannot be written (disk full, read-only)"},
            423: {"model": ErrorResponse, "description": "another process is writing to the index; try again"},
            503: {"model": ErrorResponse, "description": "the index is still loading"},
        },
    )
    async def upload_documents(files: Annotated[list[UploadFile], File(description="one or more files")]) -> Any:
        service.require_index()
        names = [service.check_upload(f.filename, f.size) for f in files]  # reject before writing anything
        staged: list[tuple[str, Path]] = []
        try:
            for name, f in zip(names, files, strict=True):
                staged.append((name, await _stage(f, service.max_upload_bytes)))
            return await service.add_documents(staged)
        finally:
            for _, path in staged:
                path.unlink(missing_ok=True)

    @app.delete(
        "/v1/documents/{doc_id}",
        response_model=DeleteResponse,
        tags=["documents"],
        summary="Remove a document from the index",
        responses={
            **AUTH_ERRORS,
            404: {"model": ErrorResponse, "description": "no such document, or the server has no index"},
            423: {"model": ErrorResponse, "description": "another process is writing to the index; try again"},
            503: {"model": ErrorResponse, "description": "the index is still loading"},
        },
    )
    async def delete_document(doc_id: str) -> DeleteResponse:
        return DeleteResponse(removed=await service.remove_document(doc_id))


async def _stage(upload: UploadFile, limit: int) -> Path:
    """Copy an upload to a temporary file, enforcing the size limit while reading (no size header needed)."""
    fd, name = tempfile.mkstemp(prefix="sotrag-upload-")
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DocumentTooLarge(f"{upload.filename} is over the upload limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _sse(run: AnswerRun, service: Service, top_k: int | None) -> AsyncIterator[str]:
    """Format the answer's events as SSE. A client that leaves cancels this, and with it the answer."""
    try:
        async for event in run.events():
            if isinstance(event, AnswerDone):
                result = service.response_for(event.result, top_k).model_dump(mode="json")
                data = json.dumps({"type": "answer_done", "result": result})
            else:
                data = event.model_dump_json()
            yield f"event: {event.type}\ndata: {data}\n\n"
    except (AnswerFailed, Busy) as exc:
        yield f"event: error\ndata: {ErrorEvent(detail=str(exc)).model_dump_json()}\n\n"


# -- errors --------------------------------------------------------------------------------------------


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PREFIXES)


def error_response(request: Request, status: int, detail: str, *, param: str | None = None) -> JSONResponse:
    if _is_openai(request):
        from sotrag.app.serving.openai_api import openai_error

        return openai_error(status, detail, param=param)
    return JSONResponse({"detail": detail}, status_code=status)


def _http_detail(exc: StarletteHTTPException) -> str:
    """The detail of an HTTP error; FastAPI's generic "error parsing the body" says what was wrong instead."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            return f"the request body is not valid UTF-8 (byte {cause.start})"
        if isinstance(cause, RecursionError):
            return "the request body is nested too deeply"
        return "the request body cannot be parsed: send JSON, or multipart form data for uploads"
    return str(exc.detail)


def _validation_detail(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    param = None
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            at = f" at character {loc[0]}" if loc else ""
            parts.append(f"malformed JSON{at}: {err.get('ctx', {}).get('error', 'cannot parse')}")
            continue
        where = ".".join(loc)
        param = param or (where or None)
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request", param


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, param = _validation_detail(exc)
        return error_response(request, 422, detail, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, _http_detail(exc))

    @app.exception_handler(QuestionTooLong)
    async def on_too_long(request: Request, exc: QuestionTooLong) -> JSONResponse:
        return error_response(request, 413, str(exc), param="messages" if _is_openai(request) else "question")

    @app.exception_handler(InvalidQuestion)
    async def on_invalid(request: Request, exc: InvalidQuestion) -> JSONResponse:
        return error_response(request, 422, str(exc), param="messages" if _is_openai(request) else "question")

    @app.exception_handler(TextTooLong)
    async def on_text_too_long(request: Request, exc: TextTooLong) -> JSONResponse:
        return error_response(request, 413, str(exc), param="messages" if _is_openai(request) else "question")

    @app.exception_handler(Busy)
    async def on_busy(request: Request, exc: Busy) -> JSONResponse:
        response = error_response(request, 429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(AnswerFailed)
    async def on_failed(request: Request, exc: AnswerFailed) -> JSONResponse:
        return error_response(request, exc.status, str(exc))

    from sotrag.retrieval.errors import DocumentNotFoundError, IndexLockedError, RetrievalError

    @app.exception_handler(RetrievalError)
    async def on_retrieval(request: Request, exc: RetrievalError) -> JSONResponse:
        if isinstance(exc, IndexLockedError):
            return error_response(request, 423, "another process is writing to the index; try again in a moment")
        if isinstance(exc, DocumentNotFoundError):
            return error_response(request, 404, public_message(exc))
        log.error("index error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(request, 503, "the document index cannot be used right now (the server log says why)")

    simple: dict[type[Exception], int] = {
        NotReady: 503,
        NoIndex: 404,
        UnknownDocument: 404,
        UnsupportedDocument: 415,
        DocumentTooLarge: 413,
        DocumentRejected: 422,
        DocumentConflict: 409,
        StorageUnavailable: 507,
        EngineError: 503,  # e.g. no remote vLLM server reachable when the question is checked
        ClientDisconnected: 499,
    }
    for exc_type, status in simple.items():

        async def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return error_response(request, status, str(exc.args[0]) if exc.args else type(exc).__name__)

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ValueError):  # the class of client errors (bad text, bad values) found past the schema
            log.warning("invalid request on %s %s: %s", request.method, request.url.path, exc)
            return error_response(request, 422, f"invalid request: {public_message(exc)}")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal server error (the server log has the details)")


class _UploadSizeGuard:
    """Refuse an upload whose declared size is over the limit before its body is read (413)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == "/v1/documents":
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit + 64 * 1024:
                detail = f"the upload is {int(length)} bytes, over the limit of {self.limit} bytes"
                body = json.dumps({"detail": detail})
                response = Response(body, status_code=413, media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _document_events_in_openapi(app: FastAPI) -> None:
    """Put the SSE event models in the schema's components, so clients can generate types for the stream."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for adapter in (TypeAdapter(Event), TypeAdapter(ErrorEvent)):
            defs = adapter.json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            if "$defs" not in defs and "title" in defs:
                components.setdefault(defs["title"], defs)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
