"""The server's guards, in-process: access control, cross-site refusal, CORS off, 405s, no server paths to
clients, backpressure (429 + Retry-After, per-answer time limit), and the class of client errors that used to be
500s (lone surrogates, unknown filter keys, history over the context, a locked index), swept over every route of
the schema.

The guards are HTTP and service logic, so the answers come from the scripted engine (``tests/fakes.py``): each
token takes a few ms, so a long answer (``max_tokens`` in the hundreds) is slow enough to queue behind or to time
out. The real server over vLLM is tests/test_server.py's.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sotrag.app.config import LimitsConfig, ServerConfig, Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from tests.fakes import ScriptedEngine, default_skeleton, sampling

KEY, ADMIN = "user-key-1234567890", "admin-key-4567890123"
AUTH = {"authorization": f"Bearer {KEY}"}
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}
DOCS = Path(__file__).parent / "data" / "retrieval_docs"
SAMPLING = sampling(point_max_tokens=8, point_min_tokens=100000, normal_max_tokens=8, normal_min_tokens=100000)
SOT = SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4)


@pytest.fixture
def engine() -> ScriptedEngine:
    """This module's engine: scripted, 5 ms a token, the tiny model's context (2048 tokens)."""
    return ScriptedEngine(
        {"skeleton": default_skeleton(), "point": " word" * 3000, "normal": " word" * 3000},
        delay_s=0.005, max_model_len=2048,
    )


def settings(**updates: Any) -> Settings:
    base = Settings(sampling=SAMPLING, sot=SOT, api_key=SecretStr(KEY), admin_api_key=SecretStr(ADMIN))
    return base.model_copy(update=updates)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The index folder; each app opens it (a Service closes its index when it stops)."""
    return tmp_path_factory.mktemp("guards-index")


@contextlib.asynccontextmanager
async def app_client(engine: Any, s: Settings, *, index: Any = None, ui: bool = False
                     ) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from sotrag.retrieval.index import DocumentIndex

    opened = DocumentIndex.open(index, create=True) if index is not None else None
    app = create_app(s, pipeline=SoTPipeline(engine, s), index=opened, ui=ui)
    service = app.state.service
    await service.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=120) as client:
            yield client, service
    finally:
        await service.stop()


def clean_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    message = body["error"]["message"] if "error" in body else body["detail"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


# -- access control ----------------------------------------------------------------------------------------


async def test_api_key_guards_rest_openai_and_document_writes(engine: Any, index: Any) -> None:
    async with app_client(engine, settings(), index=index) as (c, _):
        # Probes and the schema stay open, and say nothing private.
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert "/" not in json.dumps(ready.json()), ready.text  # no model folder, no index folder
        assert (await c.get("/openapi.json")).status_code == 200

        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/v1/answer", {"json": {"question": "hi"}}),
            ("POST", "/v1/chat/completions", {"json": {"model": "sotrag-sot", "messages": []}}),
            ("GET", "/v1/models", {}),
            ("GET", "/v1/documents", {}),
            ("GET", "/metrics", {}),
        ]
        for method, path, kw in cases:
            r = await c.request(method, path, **kw)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            wrong = await c.request(method, path, headers={"authorization": "Bearer wrong"}, **kw)
            assert wrong.status_code == 401, path
        assert "error" in (await c.get("/v1/models")).json()  # the OpenAI route keeps OpenAI's error format

        assert (await c.get("/v1/documents", headers=AUTH)).status_code == 200
        assert (await c.get("/v1/documents", headers=ADMIN_AUTH)).status_code == 200
        ok = await c.post("/v1/answer", headers=AUTH, json={"question": "hi", "mode": "normal"})
        assert ok.status_code == 200, ok.text
        assert "/" not in ok.json()["model"]  # the model's local folder is not shown

        # Document writes need the admin key: the API key gets 403, nothing gets 401.
        files = {"files": ("bread.md", (DOCS / "kitchen" / "bread.md").read_bytes())}
        clean_error(await c.post("/v1/documents", files=files), 401)
        clean_error(await c.post("/v1/documents", files=files, headers=AUTH), 403)
        clean_error(await c.delete("/v1/documents/0000000000000000", headers=AUTH), 403)
        added = await c.post("/v1/documents", files=files, headers=ADMIN_AUTH)
        assert added.status_code == 201, added.text
        doc_id = added.json()["documents"][0]["doc_id"]
        assert (await c.delete(f"/v1/documents/{doc_id}", headers=ADMIN_AUTH)).status_code == 200

    read_only = settings(admin_api_key=None, server=ServerConfig(read_only=True))
    async with app_client(engine, read_only, index=index) as (c, service):
        clean_error(await c.post("/v1/documents", files=files, headers=AUTH), 403)
        assert service.may_write_documents()  # the UI refuses too


async def test_cross_site_writes_cors_and_unknown_methods(engine: Any, index: Any) -> None:
    open_settings = settings(api_key=None, admin_api_key=None)
    async with app_client(engine, open_settings, index=index, ui=True) as (c, _):
        files = {"files": ("bread.md", (DOCS / "kitchen" / "bread.md").read_bytes())}
        for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                        {"origin": "http://localhost:1234"}):
            clean_error(await c.post("/v1/documents", files=files, headers=headers), 403)
            clean_error(await c.delete("/v1/documents/0000000000000000", headers=headers), 403)
            clean_error(await c.post("/v1/answer", json={"question": "hi"}, headers=headers), 403)
            r = await c.post("/gradio_api/queue/join", json={}, headers=headers)  # the UI's own routes too
            assert r.status_code == 403, r.text
        same = await c.post("/v1/answer", json={"question": "hi", "mode": "normal"},
                            headers={"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"})
        assert same.status_code == 200, same.text

        # CORS is off: preflights are refused and no Access-Control header leaves the app (UI included).
        for path in ("/v1/answer", "/", "/gradio_api/info"):
            pre = await c.options(path, headers={"origin": "http://localhost:5173",
                                                 "access-control-request-method": "POST"})
            assert pre.status_code == 403, (path, pre.status_code)
            assert not any(k.lower().startswith("access-control-") for k in pre.headers)
            got = await c.get(path, headers={"origin": "http://localhost:5173"})
            assert not any(k.lower().startswith("access-control-") for k in got.headers), path

        # Unknown methods on known routes: 405 with Allow; unknown API paths: a JSON 404.
        for method, path in [("PUT", "/v1/answer"), ("GET", "/v1/answer"), ("DELETE", "/v1/documents"),
                             ("POST", "/healthz"), ("PATCH", "/v1/documents/abc"), ("DELETE", "/v1/models")]:
            r = await c.request(method, path)
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"]
        clean_error(await c.get("/v1/nothing-here"), 404)


async def test_ui_needs_the_key_when_one_is_set(engine: Any) -> None:
    async with app_client(engine, settings(), ui=True) as (c, _):
        assert (await c.get("/config")).status_code == 401
        assert (await c.get("/gradio_api/info")).status_code == 401
        login = await c.post("/login", data={"username": "me", "password": "wrong"})
        assert login.status_code == 400
        login = await c.post("/login", data={"username": "me", "password": KEY})
        assert login.status_code == 200, login.text
        assert (await c.get("/config")).status_code == 200


# -- backpressure -------------------------------------------------------------------------------------------


async def test_past_the_queue_limit_answers_get_429_with_retry_after(engine: Any) -> None:
    import asyncio

    limits = LimitsConfig(max_concurrent_answers=1, max_queued_answers=1, retry_after_s=3)
    async with app_client(engine, settings(api_key=None, limits=limits)) as (c, service):
        body = {"question": "hi", "mode": "normal", "max_tokens": 400}
        first = asyncio.create_task(c.post("/v1/answer", json=body))
        second = asyncio.create_task(c.post("/v1/answer", json=body))
        deadline = time.monotonic() + 30
        while service.limiter.running + service.limiter.queued < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert (service.limiter.running, service.limiter.queued) == (1, 1)
        assert (await c.get("/readyz")).json()["answers_queued"] == 1
        for route, payload in [("/v1/answer", body), ("/v1/answer", {**body, "stream": True}),
                               ("/v1/chat/completions",
                                {"model": "sotrag-normal", "messages": [{"role": "user", "content": "hi"}]})]:
            r = await c.post(route, json=payload)
            clean_error(r, 429)
            assert r.headers["retry-after"] == "3"
        assert (await first).status_code == 200 and (await second).status_code == 200
        assert (service.limiter.running, service.limiter.queued) == (0, 0)


async def test_past_the_time_limit_an_answer_ends_with_an_error_and_no_engine_request(engine: Any) -> None:
    limits = LimitsConfig(answer_timeout_s=1.0)
    async with app_client(engine, settings(api_key=None, limits=limits)) as (c, service):
        body = {"question": "hi", "mode": "sot", "stream": True, "max_tokens": 3000}
        async with c.stream("POST", "/v1/answer", json=body) as r:
            assert r.status_code == 200
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        last = json.loads(lines[-1][len("data: "):])
        assert last["type"] == "error" and "limit of 1 s" in last["detail"], last
        r = await c.post("/v1/answer", json={**body, "stream": False, "mode": "normal"})
        assert "limit" in clean_error(r, 504)
        assert service.unfinished_engine_requests() == 0
        assert service.answers_in_flight == 0


# -- client errors ------------------------------------------------------------------------------------------


SURROGATE = '"\\ud800 roses"'


async def test_client_errors_are_4xx_not_500(engine: Any, index: Any) -> None:
    async with app_client(engine, settings(api_key=None, admin_api_key=None), index=index) as (c, _):
        def raw(path: str, text: str) -> Any:
            return c.post(path, content=text.encode(), headers={"content-type": "application/json"})

        def raw_bytes(body: bytes) -> Any:
            return c.post("/v1/answer", content=body, headers={"content-type": "application/json"})

        assert "Unicode" in clean_error(await raw("/v1/answer", '{"question": ' + SURROGATE + '}'), 422)
        history = '{"question": "hi", "history": [{"question": "q", "answer": ' + SURROGATE + '}]}'
        assert "Unicode" in clean_error(await raw("/v1/answer", history), 422)
        for content in (SURROGATE, '[{"type": "text", "text": ' + SURROGATE + '}]'):
            body = '{"model": "sotrag-sot", "messages": [{"role": "user", "content": ' + content + '}]}'
            assert "Unicode" in clean_error(await raw("/v1/chat/completions", body), 422)
        assert "filters" in clean_error(await c.post("/v1/answer", json={"question": "hi", "filters": {"x": "y"}}),
                                        422)
        # A history that overflows the context (the question alone is short): 413, before any engine work.
        turns = [{"question": "roses " * 400, "answer": "feed them " * 400}] * 3
        r = await c.post("/v1/answer", json={"question": "and in winter?", "history": turns})
        assert "history" in clean_error(r, 413)
        r = await c.post("/v1/chat/completions", json={"model": "sotrag-sot", "messages": [
            {"role": "user", "content": "roses " * 1500}, {"role": "assistant", "content": "feed " * 1500},
            {"role": "user", "content": "and in winter?"}]})
        assert "history" in clean_error(r, 413)
        assert "max_tokens" in clean_error(await c.post("/v1/answer", json={"question": "hi", "max_tokens": 30000}),
                                           422)
        assert "limit" in clean_error(await c.post("/v1/answer", json={"question": "x " * 50_001}), 413)
        # A question with nothing to read (control or zero-width characters only) is an empty one, on both routes.
        for blank in ("\u0000\u0001", "\u200b \u200b", "\ufeff"):
            assert "empty" in clean_error(await c.post("/v1/answer", json={"question": blank}), 422)
            chat = {"model": "sotrag-normal", "messages": [{"role": "user", "content": blank}]}
            assert "empty" in clean_error(await c.post("/v1/chat/completions", json=chat), 422)
        # A body that cannot be parsed says why.
        assert "UTF-8" in clean_error(await raw_bytes(b'{"question": "\xff\xfe"}'), 400)
        assert "nested too deeply" in clean_error(await raw_bytes(b"[" * 5000 + b"]" * 5000), 400)
        # The connection is still usable.
        assert (await c.post("/v1/answer", json={"question": "hi", "mode": "normal"})).status_code == 200


def _hold_lock(directory: str, ready: Any, release: Any) -> None:
    from sotrag.retrieval.index_files import writer_lock

    with writer_lock(Path(directory)):
        ready.set()
        release.wait(60)


async def test_writes_while_another_process_holds_the_index_lock_get_423(engine: Any, index: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(index), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        async with app_client(engine, settings(api_key=None, admin_api_key=None), index=index) as (c, _):
            before = (await c.get("/v1/documents")).json()
            uploads = index / "uploads"
            stored = sorted(uploads.iterdir()) if uploads.exists() else []
            r = await c.post("/v1/documents", files={"files": ("locked.md", b"# Locked\n\nsome text here\n")})
            detail = clean_error(r, 423)
            assert str(index) not in detail
            assert (sorted(uploads.iterdir()) if uploads.exists() else []) == stored  # nothing orphaned
            if before["documents"]:
                clean_error(await c.delete(f"/v1/documents/{before['documents'][0]['doc_id']}"), 423)
            assert (await c.get("/v1/documents")).json() == before
    finally:
        release.set()
        holder.join(30)


def _malformed_bodies() -> list[tuple[str, bytes, str]]:
    return [
        ("broken json", b'{"question": "hi",', "application/json"),
        ("lone surrogate", b'{"question": "\\udc00", "model": "\\udc00", "messages": [{"role": "user", '
                           b'"content": "\\udc00"}], "filters": {"source": "\\udc00"}}', "application/json"),
        ("wrong types", b'{"question": 5, "model": [], "messages": {}, "top_k": "x", "history": "no"}',
         "application/json"),
        ("huge numbers", b'{"question": "hi", "top_k": 1e400, "max_tokens": 99999999999999999999}',
         "application/json"),
        ("not utf-8", b'{"question": "\xff\xfe"}', "application/json"),
        ("nested deep", b"[" * 5000 + b"]" * 5000, "application/json"),
        ("broken multipart", b"--xx\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nabc",
         "multipart/form-data; boundary=xx"),
        ("multipart without boundary", b"abc", "multipart/form-data"),
        ("text", b"question=hi", "text/plain"),
    ]


async def test_no_route_answers_500_to_malformed_input(engine: Any, index: Any) -> None:
    """The class, not the instances: every route of the schema, every kind of malformed body."""
    async with app_client(engine, settings(api_key=None, admin_api_key=None), index=index) as (c, _):
        schema = (await c.get("/openapi.json")).json()
        tried = 0
        for path, ops in schema["paths"].items():
            concrete = path.replace("{doc_id}", "%ED%A0%80").replace("{model_id}", "..%2F..%2Fetc")
            for method in ops:
                for name, body, content_type in _malformed_bodies():
                    r = await c.request(method.upper(), concrete, content=body,
                                        headers={"content-type": content_type})
                    tried += 1
                    assert r.status_code < 500, (method, path, name, r.status_code, r.text[:300])
                    assert "Traceback" not in r.text
                    if r.status_code >= 400:
                        assert r.headers["content-type"].startswith("application/json"), (method, path, name)
                    assert str(r.status_code) in ops[method]["responses"], (method, path, name, r.text[:200])
        assert tried >= 9 * 8


def test_serving_beyond_loopback_without_a_key_warns(tmp_path: Path) -> None:
    """The warning comes before anything starts (here the model is missing, so it stops right after)."""
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SOTRAG_API_KEY"}
        return subprocess.run([sys.executable, "-m", "sotrag.app.cli", "serve", "--model", str(tmp_path / "none"),
                               "--port", "0", *args], capture_output=True, text=True, timeout=120, env=env)

    warned = serve("--host", "0.0.0.0")
    assert warned.returncode == 1 and "without an API key" in warned.stderr, warned.stderr
    quiet = serve("--host", "0.0.0.0", "--api-key", "a-key-0123456789abc")
    assert quiet.returncode == 1 and "without an API key" not in quiet.stderr, quiet.stderr
    local = serve()
    assert "without an API key" not in local.stderr


def test_an_address_it_cannot_listen_on_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """A port in use or an unknown host: one line and exit 2, before the model or the engine is touched (the model
    here does not exist, so getting past the check would fail differently). It used to be a traceback, after the
    engine had started, with "ready" logged."""
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SOTRAG_API_KEY": "a-key-0123456789"}  # not --api-key: that flag warns (ps shows it)
        return subprocess.run([sys.executable, "-m", "sotrag.app.cli", "serve", "--model", str(tmp_path / "none"),
                               "--no-index", *args], capture_output=True, text=True, timeout=120, env=env)

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        in_use = serve("--port", str(port))
    unknown = serve("--host", "no-such-host.invalid", "--port", "0")
    for proc, needle in ((in_use, "Address already in use"), (unknown, "unknown host")):
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: cannot listen on ") and needle in lines[0], lines


async def test_upload_names_cannot_escape_the_index_folder(engine: Any, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    async with app_client(engine, settings(api_key=None, admin_api_key=None), index=folder) as (c, _):
        for name in ("../../escape1.md", "..\\..\\escape2.md", "/etc/escape3.md", "....//escape4.md"):
            r = await c.post("/v1/documents", files={"files": (name, b"# Escape\n\nsome words to index here\n")})
            assert r.status_code == 201, (name, r.text)
            source = r.json()["documents"][0]["source"]  # an upload is "uploads/NAME": the name alone, no folders
            assert source.startswith("uploads/") and "/" not in source.removeprefix("uploads/"), source
    inside = {p.resolve() for p in folder.rglob("escape*")}
    assert len(inside) == 4 and all(folder.resolve() in p.parents for p in inside), inside
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.parent.glob("escape*"))


def test_no_pickle_anywhere() -> None:
    """Nothing the project loads can run code on load: no pickle, numpy without pickles, torch weights only."""
    root = Path(__file__).resolve().parent.parent
    bad = []
    for path in [*root.glob("app/**/*.py"), *root.glob("retrieval/**/*.py"), *root.glob("prompts/**/*.py"),
                 *root.glob("kernels/**/*.py")]:
        text = path.read_text()
        for needle in ("import pickle", "cPickle", "joblib", "allow_pickle=True", "import dill"):
            if needle in text:
                bad.append(f"{path.relative_to(root)}: {needle}")
        if "torch.load(" in text and "weights_only=True" not in text:
            bad.append(f"{path.relative_to(root)}: torch.load without weights_only=True")
    assert not bad, bad
