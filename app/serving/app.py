"""The sotrag server: ONE FastAPI app with the REST API, the OpenAI-compatible route and the Gradio UI at ``/``.

The engine starts in the background inside the server's event loop (vLLM's AsyncLLM binds to the loop that
creates it), so ``/healthz`` answers at once and ``/readyz`` says when answers can be served.

Errors: every client error is JSON with a one-line ``detail`` (OpenAI's ``{"error": {...}}`` format on the
OpenAI routes); unexpected errors are logged here and reach the client as a 500 without a traceback.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from sotrag.app.config import Settings
from sotrag.app.engines.base import EngineError
from sotrag.app.events import Event
from sotrag.app.pipeline import InvalidQuestion, QuestionTooLong, SoTPipeline
from sotrag.app.serving import routes
from sotrag.app.serving.api_models import (
    ErrorEvent,
    ErrorResponse,
)
from sotrag.app.serving.body_limit import BodyLimitMiddleware
from sotrag.app.serving.disconnect import ClientDisconnected
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
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.metrics import HTTPMetricsMiddleware, Metrics
from sotrag.app.serving.probes import ProbeMiddleware
from sotrag.app.serving.security import SecurityMiddleware
from sotrag.app.serving.service import Service
from sotrag.app.serving.validation import TextTooLong, public_message

log = logging.getLogger("sotrag.server")

API_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc")
# Routes answered in OpenAI's error format: sotrag's OpenAI routes, and OpenAI's others, which sotrag lacks (an
# OpenAI client asking for them gets a 404 it can read).
OPENAI_PREFIXES = (
    "/v1/chat/", "/v1/completions", "/v1/models", "/v1/embeddings", "/v1/responses", "/v1/moderations", "/v1/images",
    "/v1/audio", "/v1/files", "/v1/batches", "/v1/assistants", "/v1/threads", "/v1/fine_tuning", "/v1/vector_stores",
    "/v1/uploads", "/v1/realtime", "/v1/conversations",
)
UPLOAD_PATHS = ("/v1/documents", "/gradio_api/upload")  # the upload limit instead of the body limit
MAX_DETAIL_CHARS = 500  # an error's detail: enough for every message, not for echoing a client's 10 KB back
RETRY_AFTER_UNAVAILABLE_S = 5  # a 503 answer: the remote pool re-checks its servers every 0.5 s, a dead engine restarts


def _package_version() -> str:
    """The installed distribution's version (``import sotrag`` would hang the server above the package face)."""
    try:
        return importlib.metadata.version("sotrag")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0+unknown"


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
        version=_package_version(),
        description="Question answering over your documents, fast, with Skeleton-of-Thought parallel decoding "
        "on vLLM. REST (streaming), an OpenAI-compatible chat endpoint, and a web UI at `/`.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse, "description": "invalid request"}},
    )
    app.state.service = service
    _install_error_handlers(app)
    app.include_router(routes.router)

    from sotrag.app.serving.openai_api import create_openai_router

    app.include_router(create_openai_router(service))
    _document_events_in_openapi(app)

    api_key = _key(settings.api_key, "api_key")
    admin_key = _key(settings.admin_api_key, "admin_api_key")
    ui_session = None
    if ui:
        import gradio as gr

        from sotrag.app.serving.security import key_matches
        from sotrag.app.serving.ui import THEME_CSS, build_ui, theme

        def login(username: str, password: str) -> bool:
            return any(k is not None and key_matches(password, k) for k in (api_key, admin_key))

        blocks = build_ui(service)
        app = gr.mount_gradio_app(
            app, blocks, path="/", theme=theme(), css=THEME_CSS, footer_links=["api"], show_error=True,
            auth=login if api_key else None, max_file_size=max_upload_bytes,
            auth_message="This sotrag server needs its API key: any user name, the key as password.",
            mcp_server=False, run_history=False,
        )
        from starlette.routing import Mount

        from sotrag.app.serving.ui_mount import harden_ui

        mounted = [r.app for r in app.router.routes if isinstance(r, Mount) and r.path in ("", "/")]
        harden_ui(mounted[-1], blocks, max_upload_bytes=max_upload_bytes)
        if api_key:
            from sotrag.app.serving.security import gradio_session

            ui_session = gradio_session(mounted[-1])
    # Outermost last: metrics see every response (401s included), then the probes (answered before anything
    # heavier), then access control, then the body limit (a refused client sends no body worth reading).
    app.add_middleware(
        BodyLimitMiddleware, limit=int(settings.limits.max_body_mb * 2**20), upload_limit=max_upload_bytes,
        upload_paths=UPLOAD_PATHS, openai_prefixes=OPENAI_PREFIXES,
    )
    app.add_middleware(
        SecurityMiddleware,
        routes=app.router.routes,
        api_prefixes=API_PREFIXES,
        openai_prefixes=OPENAI_PREFIXES,
        api_key=api_key,
        admin_api_key=admin_key,
        read_only=settings.server.read_only,
        cors_origins=settings.server.cors_origins,
        allowed_hosts=settings.server.allowed_hosts,
        ui_session=ui_session,
    )
    if settings.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.server.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(ProbeMiddleware, service=service)
    app.add_middleware(HTTPMetricsMiddleware, metrics=service.metrics, api_prefixes=API_PREFIXES)
    return app


def _key(secret: Any, name: str) -> str | None:
    """The key's value, None when unset. Checked here too (Settings checks it, but a copy made with
    ``model_copy(update=...)`` skips validation): a blank one taken for "no key" would open the server."""
    from sotrag.app.config import check_secret

    return None if secret is None else check_secret(str(secret.get_secret_value()), name)


# -- errors --------------------------------------------------------------------------------------------


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PREFIXES)


def error_response(request: Request, status: int, detail: str, *, param: str | None = None) -> JSONResponse:
    detail = _short(detail)
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
    """One line from pydantic's errors: each field's path as the client wrote it (``_client_path``), each echoed
    part cut short. The param is the top-level parameter the first error is in."""
    parts: list[str] = []
    param = None
    for err in exc.errors():
        raw = [x for x in err.get("loc", ()) if x != "body"] if err.get("loc", ("",))[0] == "body" else []
        loc = [_short(str(x), 40) for x in _client_path(exc.body, raw, missing=err.get("type") == "missing")]
        if not raw:
            loc = [_short(str(x), 40) for x in err.get("loc", ()) if not _internal(str(x))]
        if err.get("type") == "json_invalid":
            at = f" at character {loc[0]}" if loc else ""
            parts.append(f"malformed JSON{at}: {err.get('ctx', {}).get('error', 'cannot parse')}")
            continue
        where = ".".join(loc)
        param = param or (loc[0] if loc else None)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if msg.startswith("Expected UploadFile"):  # a multipart part without a file name is a plain form field
            msg = 'a file part with no file name; send each file with one (filename="notes.md")'
        part = f"{where}: {msg}" if where else msg
        if part not in parts:
            parts.append(part)
    return "; ".join(parts) or "invalid request", param


def _client_path(body: Any, loc: list[Any], *, missing: bool) -> list[Any]:
    """The parts of a pydantic error location that are keys and indexes of the body the client sent. The rest are
    pydantic's names for a union's members (``constrained-str``, ``str``, ``list[ContentPart]``, a model's class
    name): walking the body tells them apart from field names, whatever pydantic calls them. A missing field's name
    (the last part of a ``missing`` error) is kept though the body lacks it."""
    if not isinstance(body, dict):
        return [x for x in loc if not _internal(str(x))]
    path: list[Any] = []
    value: Any = body
    for i, part in enumerate(loc):
        key = isinstance(value, dict) and isinstance(part, str) and part in value
        index = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if key or index:
            path.append(part)
            value = value[part]
        elif missing and i == len(loc) - 1 and isinstance(value, dict) and not _internal(str(part)):
            path.append(part)
    return path


def _internal(loc_part: str) -> bool:
    """pydantic's names for a union's members and a dict's keys, not the client's field names (where the body
    cannot tell: it was not JSON)."""
    return "[" in loc_part or "(" in loc_part


def _short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """An echo of the client's input cut to ``limit`` characters, so a 10 KB id is not sent back whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        response = error_response(request, exc.status, str(exc))
        if exc.status == 503:  # no engine or vLLM server could take it: a client may try again shortly
            response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE_S)
        return response

    from sotrag.retrieval.errors import DocumentNotFoundError, IndexLockedError, RetrievalError

    @app.exception_handler(RetrievalError)
    async def on_retrieval(request: Request, exc: RetrievalError) -> JSONResponse:
        if isinstance(exc, IndexLockedError):
            return error_response(request, 423, "another process is writing to the index; try again in a moment")
        if isinstance(exc, DocumentNotFoundError):
            return error_response(request, 404, public_message(exc))
        log.error("index error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(request, 503, "the document index cannot be used right now (the server log says why)")

    @app.exception_handler(NotReady)
    async def on_not_ready(request: Request, exc: NotReady) -> JSONResponse:
        """Starting, failed, or no vLLM server could check the question: a client may try again shortly."""
        response = error_response(request, 503, str(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE_S)
        return response

    simple: dict[type[Exception], int] = {
        NoIndex: 404,
        UnknownDocument: 404,
        UnsupportedDocument: 415,
        DocumentTooLarge: 413,
        DocumentRejected: 422,
        DocumentConflict: 409,
        StorageUnavailable: 507,
        ClientDisconnected: 499,
    }
    for exc_type, status in simple.items():

        async def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return error_response(request, status, str(exc.args[0]) if exc.args else type(exc).__name__)

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(EngineError)
    async def on_engine(request: Request, exc: EngineError) -> JSONResponse:
        """An engine error before an answer started (checking the question needs the engine's tokenizer): its
        public line only (never a server's URL or text), the client's 4xx for a refused value, else a 503 with
        Retry-After (no vLLM server could take it; the log keeps the full message)."""
        status = exc.status if 400 <= exc.status < 500 else 503
        log.warning("engine error on %s %s: %s", request.method, request.url.path, exc)
        response = error_response(request, status, exc.public, param=getattr(exc, "param", None))
        if status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE_S)
        return response

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ValueError):  # the class of client errors (bad text, bad values) found past the schema
            log.warning("invalid request on %s %s: %s", request.method, request.url.path, exc)
            return error_response(request, 422, f"invalid request: {public_message(exc)}")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal server error (the server log has the details)")


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
