"""``/healthz`` and ``/readyz``, answered by a pure ASGI middleware in front of everything but the metrics.

Why not routes: a probe that waits is a restart (liveness) or a pod taken out of service (readiness). Answered
here, a probe skips access control, the body limit, FastAPI's routing, dependency solving and response
validation, and never waits for anything an answer holds: no lock, no thread, no engine call. The routes of the
same paths remain for the OpenAPI schema; they return the same bodies.

A remote engine's servers are counted up and down; a probe that sends the key (or any, on a server without one)
also sees them one by one as ``server 1``, ``server 2``, ...: never their URLs (which may hold credentials) or
their errors' text; the log keeps those.

The index counts in ``/readyz`` are cached (counting takes the index's read lock); they are recounted in a
worker thread when the index's files change on disk, so an ingest by another process (``sotrag ingest``) shows
within a probe or two.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sotrag.app.serving.api_models import Health, Readiness, ServerHealth
from sotrag.app.serving.security import key_matches
from sotrag.app.serving.validation import public_model_name

PROBES = {"/healthz": SimpleNamespace(path="/healthz"), "/readyz": SimpleNamespace(path="/readyz")}
HEALTH = Health().model_dump_json().encode()
STORE_FILES = ("store.sqlite", "store.sqlite-wal")  # SQLite in WAL mode: a write changes one of them


def readiness(service: Any, *, detail: bool = False) -> Readiness:
    """What ``/readyz`` says. Nothing here blocks or waits: every figure is a field or a cached count. ``detail``:
    the remote engine's servers one by one (by label), for a caller with the key; else up/down counts only."""
    engine = service.engine
    servers = service.engine_servers()
    up = sum(1 for s in servers if s["up"]) if servers is not None else None
    servers_up = servers is None or bool(up)
    limiter = service.limiter
    return Readiness(
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
        servers=[_labelled(i, s) for i, s in enumerate(servers, 1)] if servers is not None and detail else None,
        servers_up=up,
        servers_down=len(servers) - up if servers is not None and up is not None else None,
    )


def _labelled(number: int, status: dict[str, Any]) -> ServerHealth:
    """A server as a probe may show it to anyone: a label for its URL (which may carry credentials and names the
    topology) and no reason (another server's error text); the log has both."""
    return ServerHealth(**{**status, "url": f"server {number}", "reason": None})


class IndexWatch:
    """Recounts the index (in a thread, one count at a time) when its files' modification times change."""

    def __init__(self) -> None:
        self.seen: tuple[float, ...] | None = None
        self.counting: asyncio.Future[None] | None = None

    def poll(self, service: Any) -> None:
        directory = getattr(service.index, "directory", None)
        if directory is None or service.state != "ready" or (self.counting and not self.counting.done()):
            return
        stamp = _mtimes(Path(directory))
        if self.seen is None:
            self.seen = stamp  # counted at start
            return
        if stamp != self.seen:
            self.seen = stamp
            self.counting = asyncio.get_running_loop().run_in_executor(None, _recount, service)


def _mtimes(directory: Path) -> tuple[float, ...]:
    stamps = []
    for name in STORE_FILES:
        try:
            stamps.append(os.stat(directory / name).st_mtime)
        except OSError:
            stamps.append(0.0)
    return tuple(stamps)


def _recount(service: Any) -> None:
    try:
        service.refresh_index_status()
    except Exception:  # a locked or broken index: the old counts stay; answers report the problem
        return


class ProbeMiddleware:
    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service
        self.watch = IndexWatch()

    def _keyed(self, scope: dict[str, Any]) -> bool:
        """Whether the probe may see per-server detail: it sent a configured key, or the server has none."""
        settings = getattr(self.service, "settings", None)
        keys = [str(k.get_secret_value()) for k in (getattr(settings, "api_key", None),
                                                     getattr(settings, "admin_api_key", None)) if k is not None]
        if not keys:
            return True
        header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), "")
        scheme, _, token = header.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
        return any(key_matches(given, key) for key in keys)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in PROBES or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        scope["route"] = PROBES[path]  # the metrics' route label
        if path == "/healthz":
            status, data = 200, HEALTH
        else:
            self.watch.poll(self.service)
            body = readiness(self.service, detail=self._keyed(scope))
            status, data = (200 if body.ready else 503), json.dumps(body.model_dump(mode="json")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                   (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else data})
