"""What ``gr.mount_gradio_app`` leaves open on the UI's Gradio app, closed once it is mounted.

- Gradio's own check that an event's files were uploaded (``blocks.has_launched``) is only switched on by
  ``launch()``; a mounted app skips it. It is switched on here, beside sotrag's own check (``ui_files``).
- The Gradio app keeps FastAPI's default error handlers: a malformed body to any of its routes (``/login``,
  ``/gradio_api/...``) came back as pydantic's report with the whole input echoed, without a login. Here every
  error is one short line: where and what, never the input.
- Gradio's AI code-editing routes (``/gradio_api/vibe-*``, switched on by an environment variable) edit the
  app's source and are not behind the login: sotrag never uses them, so they are removed.
- Uploads wait in Gradio's upload folder until an event uses them (or Gradio's cache cleaner runs): without a
  bound, a client could fill the disk. Before each upload, the oldest pending uploads beyond a count and a
  total size are deleted.
"""

from __future__ import annotations

import asyncio
import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sotrag.app.serving.ui_files import UploadedFiles

MAX_PENDING_UPLOADS = 256
PENDING_UPLOADS_PER_FILE_LIMIT = 16  # the pending uploads may hold this many files of the largest allowed size
MAX_DETAIL_CHARS = 200
UNUSED_ROUTES = ("/gradio_api/vibe-", "/gradio_api/undo-vibe-")


def harden_ui(gradio_app: object, blocks: Any, *, max_upload_bytes: int) -> None:
    """Close the gaps above on the Gradio app that ``gr.mount_gradio_app`` mounted (before it serves)."""
    if not isinstance(gradio_app, FastAPI):
        raise TypeError("the mounted UI is not Gradio's FastAPI app")
    blocks.has_launched = True
    blocks.vibe_mode = False
    gradio_app.router.routes[:] = [
        r for r in gradio_app.router.routes if not str(getattr(r, "path", "")).startswith(UNUSED_ROUTES)
    ]
    gradio_app.add_exception_handler(RequestValidationError, _on_validation)
    gradio_app.add_exception_handler(StarletteHTTPException, _on_http)
    gradio_app.add_middleware(
        PendingUploads, uploads=UploadedFiles.of(blocks), max_files=MAX_PENDING_UPLOADS,
        max_bytes=PENDING_UPLOADS_PER_FILE_LIMIT * max_upload_bytes,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": f"invalid request: {validation_line(exc)}"}, status_code=422)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"detail": short_detail(exc.status_code, exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


def validation_line(exc: RequestValidationError) -> str:
    """The first error as ``where: what``: no input, no validator names, one line."""
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(x)[:40] for x in first.get("loc", ()) if x != "body" and not isinstance(x, int))
    what = (str(first.get("msg", "not valid")).splitlines() or ["not valid"])[0]
    line = f"{where[:100]}: {what}" if where else what
    return line[:MAX_DETAIL_CHARS]


def short_detail(status: int, detail: object) -> object:
    """Gradio's own message when it is short (its login check sends a small object the page reads), else the
    status's name: a long message may carry what the client sent."""
    if isinstance(detail, str):
        lines = detail.strip().splitlines()
        if lines and len(lines[0]) <= MAX_DETAIL_CHARS:
            return lines[0]
    elif detail is not None:
        try:
            if len(json.dumps(detail)) <= 2 * MAX_DETAIL_CHARS:
                return detail
        except (TypeError, ValueError):
            pass
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "the request failed"


class PendingUploads:
    """Before each upload to Gradio's upload route, delete the oldest pending uploads beyond the bounds (pure ASGI)."""

    def __init__(self, app: Any, *, uploads: UploadedFiles, max_files: int, max_bytes: int) -> None:
        self.app = app
        self.uploads = uploads
        self.max_files = max_files
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope.get("method") == "POST"
                and str(scope.get("path", "")).rstrip("/").endswith("/gradio_api/upload")):
            await asyncio.to_thread(self.make_room)
        await self.app(scope, receive, send)

    def make_room(self) -> None:
        known = self.uploads.known() if self.uploads.known is not None else None
        if not isinstance(known, set):
            return
        pending: list[tuple[float, int, str]] = []
        for name in list(known):
            try:
                info = os.stat(name)
            except OSError:
                known.discard(name)  # used, or deleted by Gradio's cache cleaner
                continue
            pending.append((info.st_mtime, info.st_size, name))
        pending.sort()
        count, total = len(pending), sum(size for _, size, _ in pending)
        for _, size, name in pending:
            if count < self.max_files and total < self.max_bytes:
                break
            self.uploads.discard(Path(name))
            count, total = count - 1, total - size
