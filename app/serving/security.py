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
- **Host allow-list**: a request whose ``Host`` is not 127.0.0.1, localhost, [::1] (any port) or one the operator
  configured (``SOTRAG_SERVER__ALLOWED_HOSTS``) gets 421, the UI's included: a page on another site cannot reach
  a local server by rebinding its own DNS name to 127.0.0.1 (its requests then say ``Host: evil.example`` and
  pass any same-origin check). The probes answer any host: they say nothing private, and Kubernetes sends the
  pod's IP.
- **405, not 404**: a known API path asked with an unknown method gets 405 with ``Allow`` (the UI is mounted at
  ``/`` and would otherwise answer every unmatched request with its own 404), after the key check, so a client
  without the key learns nothing. ``HEAD`` is answered on every GET route, as GET without its body.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import Match, Mount

OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Gradio routes that answer without its login check: guarded here when the UI has a login.
UI_SESSION_PATHS = frozenset({"/gradio_api/cancel", "/gradio_api/reset", "/gradio_api/reset/"})
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
        allowed_hosts: Iterable[str] = (),
        ui_session: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.routes = [r for r in routes if not isinstance(r, Mount)]
        self.api_prefixes = api_prefixes
        self.openai_prefixes = openai_prefixes
        self.api_key = api_key
        self.admin_api_key = admin_api_key
        self.read_only = read_only
        self.cors_origins = {o.rstrip("/") for o in cors_origins}
        hosts = {h.lower() for h in allowed_hosts}
        self.any_host = "*" in hosts
        self.host_suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))
        self.hosts = LOOPBACK_HOSTS | {h for h in hosts if not h.startswith("*")}
        self.ui_session = ui_session  # cookie header -> logged in to the UI; None: the UI has no login

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(scope)
        if refusal is not None:
            status, detail, headers = refusal
            await self._refuse(scope, send, status, detail, headers)
            return
        if scope.get("method") == "HEAD" and scope.get("path", "").startswith(self.api_prefixes):
            scope, send = _head_as_get(scope, send)
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

        if path not in PROBE_PATHS and not self._host_allowed(headers.get("host", "")):
            shown = headers.get("host", "")[:100] or "(none)"
            return 421, (f"this server does not answer requests for host {shown!r}; its operator can allow it in "
                         "SOTRAG_SERVER__ALLOWED_HOSTS"), []
        if method == "OPTIONS" and "origin" in headers and not self.cors_origins:
            return 403, "cross-origin requests are not allowed (CORS is off on this server)", []
        if method in UNSAFE_METHODS and self._cross_site(headers):
            return 403, "cross-site requests are refused for this method", []
        if not is_api:
            session = self.ui_session
            if session is not None and path in UI_SESSION_PATHS and not session(headers.get("cookie", "")):
                return 401, "log in to the UI first", []
            return None  # the UI guards itself (Gradio login)
        if not path.startswith(OPEN_PATHS):  # the key first: a client without it learns nothing of the routes
            refusal = self._access(method, path, headers)
            if refusal is not None:
                return refusal
        allowed = self._allowed_methods(scope)
        if allowed is None:
            return 404, "not found", []
        if "GET" in allowed:
            allowed.add("HEAD")
        if method not in allowed and not (method == "OPTIONS" and self.cors_origins):
            return 405, f"method {method[:20]} is not allowed here", [("allow", ", ".join(sorted(allowed)))]
        return None

    def _access(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, list[tuple[str, str]]] | None:
        """The API key (and the admin key for document writes), or None when this request may go on."""
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

    def _host_allowed(self, host: str) -> bool:
        name = host.strip().lower()
        name = name[: name.find("]") + 1] if name.startswith("[") else name.rsplit(":", 1)[0]  # no port
        name = name.rstrip(".")
        if not name:
            return False
        return self.any_host or name in self.hosts or (bool(self.host_suffixes) and name.endswith(self.host_suffixes))

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
            kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                    421: "permission_error"}
            body = {"error": {"message": detail, "type": kind.get(status, "invalid_request_error"),
                              "param": None, "code": None}}
        else:
            body = {"detail": detail}
        data = json.dumps(body).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})


def gradio_session(gradio_app: Any) -> Callable[[str], bool]:
    """Whether a request's cookies carry a session of this Gradio app's login (its own check, as a function)."""

    def logged_in(cookie_header: str) -> bool:
        try:
            cookies = SimpleCookie(cookie_header)
        except CookieError:
            return False
        cookie_id = getattr(gradio_app, "cookie_id", "")
        tokens: dict[str, str] = getattr(gradio_app, "tokens", {})
        for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            morsel = cookies.get(name)
            if morsel is not None and morsel.value in tokens:
                return True
        return False

    return logged_in


def _head_as_get(scope: dict[str, Any], send: Any) -> tuple[dict[str, Any], Any]:
    """HEAD on a GET route: run the GET, send its status and headers, and drop the body (RFC 9110)."""

    async def send_head(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send(message)

    return {**scope, "method": "GET"}, send_head


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _challenge() -> list[tuple[str, str]]:
    return [("www-authenticate", 'Bearer realm="sotrag"')]
