"""A request body limit for every route, the UI's included, enforced while the body arrives (one pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused before anything is read; a chunked body (or one that
lies about its length) is counted as it is received, and refused at the first byte past the limit. Either way the
client gets 413 JSON and the server never holds more than the limit: a route that reads the whole body first
(JSON parsing) would otherwise grow by the body's size, and more, before any check of its own could run.
Uploads (``POST /v1/documents``, the UI's upload route) have their own, larger, limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

MULTIPART_SLACK = 64 * 1024  # the form's boundaries and part headers, on top of the files themselves


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the limit; FastAPI re-raises HTTPExceptions while reading a body."""


class BodyLimitMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        limit: int,
        upload_limit: int,
        upload_paths: tuple[str, ...],
        openai_prefixes: tuple[str, ...],
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit + MULTIPART_SLACK
        self.upload_paths = upload_paths
        self.openai_prefixes = openai_prefixes

    def _limit_for(self, path: str) -> tuple[int, str]:
        if path in self.upload_paths:
            return self.upload_limit, "upload"
        return self.limit, "request body"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self._limit_for(scope.get("path", ""))
        length = _content_length(scope)
        if length is not None and length > limit:
            await self._refuse(scope, send, f"the {what} is {length} bytes, over the limit of {limit} bytes")
            return
        received = 0
        over = False  # the body went past the limit
        started = False  # a response start was sent
        replaced = False  # it was our 413: the route's own messages are dropped from then on
        detail = f"the {what} is over the limit of {limit} bytes"

        async def counted() -> dict[str, Any]:
            nonlocal received, over
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(413, detail)
            return message

        async def guarded(message: dict[str, Any]) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if over and message["status"] != 413:  # whatever the route made of the error, it is a 413
                    replaced = True
                    await self._refuse(scope, send, detail)
                    return
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
            if not started:
                await self._refuse(scope, send, detail)

    async def _refuse(self, scope: dict[str, Any], send: Any, detail: str) -> None:
        path: str = scope.get("path", "")
        if path.startswith(self.openai_prefixes):
            body: dict[str, Any] = {"error": {"message": detail, "type": "invalid_request_error", "param": None,
                                              "code": "request_too_large"}}
        else:
            body = {"detail": detail}
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"connection", b"close")]  # the rest of the body is not read: this connection cannot go on
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def _content_length(scope: dict[str, Any]) -> int | None:
    for key, value in scope.get("headers") or []:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None
