"""Access control and browser safety for the whole app (REST, OpenAI route, UI), as one pure ASGI middleware.

- **API key** (``SOTRAG_API_KEY`` / ``serve --api-key``): REST and OpenAI routes and ``/metrics`` need
  ``Authorization: Bearer KEY`` (401 without it; compared with ``hmac.compare_digest``). The UI has its own login
  (Gradio auth, password = the key), so its pages and Gradio's API are guarded by Gradio itself.
- **Document writes** (upload, delete) need the admin key when one is set (``SOTRAG_ADMIN_API_KEY``); read-only
  mode refuses them (403). Probes (``/healthz``, ``/readyz``) and the schema stay open and say nothing private.
- **Cross-site requests** to state-changing methods are refused (403): a browser's ``Sec-Fetch-Site: cross-site``,
  or an ``Origin`` that is neither this server nor a configured CORS origin. CORS is off unless origins are
  configured: preflights get 403 and no ``Access-Control-*`` header leaves the app (Gradio adds its own for
  localhost origins, which would let any local page read the UI's answers).
- **405, not 404**: a known API path asked with an unknown method gets 405 with ``Allow`` (the UI is mounted at
  ``/`` and would otherwise answer every unmatched request with its own 404).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import Match, Mount

OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")
WRITE_ROUTES = ("/v1/documents",)  # POST, and DELETE /v1/documents/{id}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (the time taken says nothing about how much of the key was right)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class SecurityMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        routes: Iterable[Any],
        api_prefixes: tuple[str, ...],
        openai_prefixes: tuple[str, ...],
        api_key: str | None,
        admin_api_key: str | None,
        read_only: bool,
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.routes = [r for r in routes if not isinstance(r, Mount)]
        self.api_prefixes = api_prefixes
        self.openai_prefixes = openai_prefixes
        self.api_key = api_key
        self.admin_api_key = admin_api_key
        self.read_only = read_only
        self.cors_origins = {o.rstrip("/") for o in cors_origins}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            status, detail, headers = refusal
            await self._refuse(scope, send, status, detail, headers)
            return
        if self.cors_origins:
            await self.app(scope, receive, send)
            return

        async def send_without_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_without_cors)

    # -- the checks, in order --------------------------------------------------------------------------------

    def _check(self, scope: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]]] | None:
        method: str = scope.get("method", "GET")
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        is_api = path.startswith(self.api_prefixes)

        if method == "OPTIONS" and "origin" in headers and not self.cors_origins:
            return 403, "cross-origin requests are not allowed (CORS is off on this server)", []
        if method in UNSAFE_METHODS and self._cross_site(headers):
            return 403, "cross-site requests are refused for this method", []
        if is_api:
            allowed = self._allowed_methods(scope)
            if allowed is None:
                return 404, "not found", []
            if method not in allowed and not (method == "OPTIONS" and self.cors_origins):
                return 405, f"method {method} is not allowed here", [("allow", ", ".join(sorted(allowed)))]
        if not is_api or path.startswith(OPEN_PATHS):
            return None  # the UI guards itself (Gradio login); probes and the schema are open
        if self.api_key is None and self.admin_api_key is None and not self.read_only:
            return None
        token = _bearer(headers)
        is_write = method in UNSAFE_METHODS and path.startswith(WRITE_ROUTES)
        if is_write:
            if self.read_only:
                return 403, "this server is read-only: documents cannot be added or removed", []
            if self.admin_api_key is not None:
                if key_matches(token, self.admin_api_key):
                    return None
                if token is None or not (self.api_key is None or key_matches(token, self.api_key)):
                    return 401, "this route needs the admin key (Authorization: Bearer KEY)", _challenge()
                return 403, "this route needs the admin key, not the API key", []
        if self.api_key is None:
            return None
        admin = self.admin_api_key
        if key_matches(token, self.api_key) or (admin is not None and key_matches(token, admin)):
            return None
        return 401, "a valid API key is needed (Authorization: Bearer KEY)", _challenge()

    def _cross_site(self, headers: dict[str, str]) -> bool:
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        origin = headers.get("origin")
        if origin is None:
            return False  # not a browser (curl, the openai client): nothing to forge
        if origin.rstrip("/") in self.cors_origins:
            return False
        parts = urlsplit(origin)
        host = headers.get("host", "")
        return origin == "null" or not parts.netloc or parts.netloc.lower() != host.lower()

    def _allowed_methods(self, scope: dict[str, Any]) -> set[str] | None:
        """Methods of the API routes matching this path; None when no API route has it."""
        allowed: set[str] = set()
        found = False
        for route in self.routes:
            match, _ = route.matches({**scope, "method": "GET"} if scope.get("method") == "HEAD" else scope)
            if match == Match.NONE:
                continue
            methods = getattr(route, "methods", None)
            if methods is None:  # not a method-bound route
                continue
            found = True
            allowed |= set(methods)
        return allowed if found else None

    async def _refuse(
        self, scope: dict[str, Any], send: Any, status: int, detail: str, headers: list[tuple[str, str]]
    ) -> None:
        path: str = scope.get("path", "")
        body: dict[str, Any]
        if path.startswith(self.openai_prefixes):
            kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}
            body = {"error": {"message": detail, "type": kind.get(status, "invalid_request_error"),
                              "param": None, "code": None}}
        else:
            body = {"detail": detail}
        data = json.dumps(body).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _challenge() -> list[tuple[str, str]]:
    return [("www-authenticate", 'Bearer realm="sotrag"')]
