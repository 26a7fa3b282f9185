"""The server's outer guards, in-process without an engine: what a misconfigured operator or an attacker meets
before any answer runs. Blank keys refused at start (settings, flags, key files, the deploy example), the Host
allow-list against DNS rebinding, the request body limit (enforced while reading), the probes, HEAD and the key
check before 405. The app is built without starting its engine (the engine is never needed here); where a ready
service is needed it runs over a stand-in pipeline whose engine only has a name.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from sotrag.app.config import LimitsConfig, ServerConfig, Settings
from sotrag.app.serving.app import create_app

ROOT = Path(__file__).resolve().parent.parent
KEY = "user-key-1234567890"
AUTH = {"authorization": f"Bearer {KEY}"}


def client_for(app: Any, host: str = "127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}", timeout=60)


def stand_in_pipeline() -> Any:
    """Enough of a pipeline for ``Service.start()``: an engine with a name (alive: it has no health check)."""
    engine = SimpleNamespace(model_name="tiny", max_model_len=4096, load=None)
    return SimpleNamespace(engine=engine, retriever=None, router=None)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No SOTRAG_* variable from the caller's environment, and a working folder without a .env file."""
    for name in list(os.environ):
        if name.startswith("SOTRAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# -- 1. a blank key is refused, from every source ----------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", " key-with-spaces "])
@pytest.mark.parametrize("name", ["SOTRAG_API_KEY", "SOTRAG_ADMIN_API_KEY", "SOTRAG_ENGINE__API_KEY"])
def test_a_blank_key_in_the_environment_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=r"empty|spaces"):
        Settings()


def test_a_blank_key_in_a_dotenv_file_is_refused(clean_env: Path) -> None:
    (clean_env / ".env").write_text("SOTRAG_API_KEY=api-key-0123456789\nSOTRAG_ADMIN_API_KEY=\n")
    with pytest.raises(ValidationError, match="admin_api_key is empty"):
        Settings()


def test_security_lists_refuse_blank_and_malformed_entries() -> None:
    for bad in ([""], ["*"], ["evil.example"], ["http://ok.example/path"]):
        with pytest.raises(ValidationError):
            ServerConfig(cors_origins=bad)
    for bad in ([""], ["http://host"], ["host:8000"], ["a b"]):
        with pytest.raises(ValidationError):
            ServerConfig(allowed_hosts=bad)
    ok = ServerConfig(cors_origins=["https://app.example/"], allowed_hosts=["Sotrag.Example", "*.internal", "*"])
    assert ok.cors_origins == ["https://app.example"] and ok.allowed_hosts == ["sotrag.example", "*.internal", "*"]
    with pytest.raises(ValidationError):
        LimitsConfig(max_body_mb=0)


def test_create_app_refuses_a_blank_key_that_skipped_validation() -> None:
    """``model_copy(update=...)`` does not validate: an empty SecretStr (falsy) used to mean "no key"."""
    blank = Settings().model_copy(update={"api_key": SecretStr("")})
    with pytest.raises(ValueError, match="empty"):
        create_app(blank, ui=False)


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOTRAG_")}
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", "serve", "--model", str(tmp_path / "none"), "--no-index",
         "--port", "0", *args],
        capture_output=True, text=True, timeout=180, env={**base, **(env or {})}, cwd=tmp_path,
    )


def one_error_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_serve_refuses_a_blank_key_in_one_line(tmp_path: Path) -> None:
    """From the environment, a flag or a key file: one line, exit 2, before anything starts. The model folder
    does not exist, so getting past the check would fail differently (exit 1)."""
    one_error_line(serve(tmp_path, "--host", "0.0.0.0", env={"SOTRAG_API_KEY": "", "SOTRAG_ADMIN_API_KEY": ""}),
                   "SOTRAG_API_KEY")
    one_error_line(serve(tmp_path, "--api-key", " "), "--api-key is empty")
    (tmp_path / "blank").write_text("\n")
    one_error_line(serve(tmp_path, "--admin-api-key-file", str(tmp_path / "blank")), "--admin-api-key-file is empty")


def test_serve_takes_the_key_from_a_file_and_warns_about_the_flag(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-a-file-0123456789\n")
    from_file = serve(tmp_path, "--host", "0.0.0.0", "--api-key-file", str(tmp_path / "key"))
    assert from_file.returncode == 1, from_file.stderr  # got past the key: the missing model stops it
    assert "without an API key" not in from_file.stderr and "visible" not in from_file.stderr
    flag = serve(tmp_path, "--api-key", "on-the-command-line-0123")
    assert flag.returncode == 1 and "visible to every user" in flag.stderr, flag.stderr


def test_the_deploy_example_cannot_start_an_open_server(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/secrets.env.example copied unfilled, or with its key lines deleted, with the environment compose
    gives the server: the settings refuse to load (one line in ``sotrag serve``), not an open server on 0.0.0.0."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    environment = {  # with compose's ${NAME:-default} taken as its default
        str(k): re.sub(r"\$\{\w+:-(.*)\}", r"\1", str(v))
        for k, v in compose["services"]["sotrag"]["environment"].items()
    }
    example = (ROOT / "deploy" / "secrets.env.example").read_text()
    unfilled = example
    deleted = "\n".join(line for line in example.splitlines() if not line.startswith("SOTRAG_"))
    for secrets in (unfilled, deleted):
        (clean_env / "secrets.env").write_text(secrets)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=r"api_key is empty|require_auth is on"):
            Settings(_env_file=clean_env / "secrets.env")  # type: ignore[call-arg]
    filled_in = example
    for name, value in (("SOTRAG_API_KEY", "api-key-k1-0123456789"), ("SOTRAG_ADMIN_API_KEY", "admin-key-k2-0123456"),
                        ("SOTRAG_ENGINE__API_KEY", "engine-key-k3-012345")):
        filled_in = filled_in.replace(f"\n{name}=\n", f"\n{name}={value}\n")
    (clean_env / "secrets.env").write_text(filled_in)
    filled = Settings(_env_file=clean_env / "secrets.env")  # type: ignore[call-arg]
    assert filled.api_key is not None and filled.server.allowed_hosts == ["*"]


# -- 2. the Host allow-list (DNS rebinding) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def keyless_ui_app() -> Any:
    """What ``make demo`` serves: no key, the UI on."""
    return create_app(Settings(), ui=True)


async def test_a_rebound_host_is_refused_everywhere_but_the_probes(keyless_ui_app: Any) -> None:
    evil = {"origin": "http://evil.example"}
    async with client_for(keyless_ui_app, "evil.example") as c:
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/v1/answer", {"json": {"question": "hi"}}),
            ("POST", "/v1/documents", {"files": {"files": ("a.md", b"# a\n\ntext\n")}}),
            ("DELETE", "/v1/documents/0000000000000000", {}),
            ("POST", "/v1/chat/completions", {"json": {"model": "sotrag-sot", "messages": []}}),
            ("GET", "/", {}),
            ("POST", "/gradio_api/upload", {"files": {"files": ("a.md", b"x" * 1000)}}),
            ("POST", "/gradio_api/queue/join", {"json": {}}),
        ]
        for method, path, kw in requests:
            r = await c.request(method, path, headers=evil, **kw)
            assert r.status_code == 421, (method, path, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("application/json")
            body = r.json()
            message = body["error"]["message"] if "error" in body else body["detail"]
            assert "evil.example" in message and "ALLOWED_HOSTS" in message
        assert (await c.get("/healthz")).status_code == 200  # Kubernetes probes send the pod's IP
        assert (await c.get("/readyz")).status_code == 503  # starting (the engine is not started here)


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "localhost:7860", "[::1]:8000", "[::1]",
                                  "LOCALHOST:80"])
async def test_loopback_hosts_are_answered(keyless_ui_app: Any, host: str) -> None:
    async with client_for(keyless_ui_app, host) as c:
        r = await c.post("/v1/answer", json={"question": "hi"})
        assert r.status_code == 503, r.text  # past the guards: the engine is still starting
        assert (await c.get("/")).status_code == 200


async def test_configured_hosts_are_answered_and_others_not() -> None:
    s = Settings(server=ServerConfig(allowed_hosts=["sotrag.example.com", "*.internal"]))
    app = create_app(s, ui=False)
    for host, allowed in [("sotrag.example.com", True), ("sotrag.example.com:443", True), ("a.b.internal", True),
                          ("internal", False), ("sotrag.example.com.evil.example", False), ("127.0.0.1", True)]:
        async with client_for(app, host) as c:
            r = await c.get("/v1/models")
            assert (r.status_code != 421) == allowed, (host, r.status_code)


# -- 3. the body limit, while reading ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_app() -> Any:
    limits = LimitsConfig(max_body_mb=16 / 1024, max_upload_mb=1.0)  # 16 KiB bodies, 1 MiB uploads
    return create_app(Settings(limits=limits), ui=True)


async def test_a_json_body_over_the_limit_gets_413_on_every_route(small_body_app: Any) -> None:
    big = "x" * 40_000
    async with client_for(small_body_app) as c:
        r = await c.post("/v1/answer", json={"question": big})
        assert r.status_code == 413 and "over the limit of 16384 bytes" in r.json()["detail"], r.text
        r = await c.post("/v1/chat/completions", json={"model": "sotrag-sot",
                                                        "messages": [{"role": "user", "content": "hi"}], "user": big})
        assert r.status_code == 413 and r.json()["error"]["message"], r.text  # OpenAI's error format
        r = await c.post("/gradio_api/queue/join", json={"data": [big], "fn_index": 0, "session_hash": "x"})
        assert r.status_code == 413, r.text
        small = await c.post("/v1/answer", json={"question": "hi"})
        assert small.status_code == 503, small.text  # under the limit: on to the route (the engine is starting)
        # Uploads have their own, larger, limit.
        upload = await c.post("/v1/documents", files={"files": ("a.md", b"# a\n\n" + b"word " * 20_000)})
        assert upload.status_code != 413, upload.text
        over = await c.post("/v1/documents", files={"files": ("a.md", b"word " * 300_000)})
        assert over.status_code == 413, over.text


async def test_a_chunked_body_is_refused_while_it_arrives(small_body_app: Any) -> None:
    """No Content-Length: the body is counted as it is received; the rest is never read."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"question": "'
        for _ in range(1000):  # 64 MB if it were all read
            sent += 1
            yield b"x" * 65536
        yield b'"}'

    async with client_for(small_body_app) as c:
        for path in ("/v1/answer", "/v1/chat/completions", "/gradio_api/queue/join"):
            sent = 0
            r = await c.post(path, content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
            assert sent <= 2, (path, sent)


# -- 4. probes ---------------------------------------------------------------------------------------------


async def test_start_runs_no_full_collection_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection over the started process's heap stalled the loop, and every probe, at the moment the
    server turned ready; ``sotrag serve`` does it before it listens instead."""
    generations: list[int] = []
    real = gc.collect

    def recording(generation: int = 2) -> int:
        generations.append(generation)
        return real(min(generation, 1))

    monkeypatch.setattr(gc, "collect", recording)
    app = create_app(Settings(), pipeline=stand_in_pipeline(), ui=False)
    service = app.state.service
    await service.start()
    try:
        assert service.state == "ready", service.error
        assert gc.get_freeze_count() > 0
        assert 2 not in generations, generations
    finally:
        await service.stop()
        gc.unfreeze()


async def test_probes_answer_before_access_control_and_routing() -> None:
    """Probes answer any host and method HEAD, without a key, and are counted in the metrics by their path."""
    s = Settings(api_key=SecretStr(KEY))
    app = create_app(s, pipeline=stand_in_pipeline(), ui=False)
    service = app.state.service
    await service.start()
    try:
        async with client_for(app, "10.1.2.3:8000") as c:
            ready = await c.get("/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
            assert ready.json()["model"] == "tiny"
            head = await c.head("/healthz")
            assert head.status_code == 200 and head.content == b""
        async with client_for(app) as c:
            metrics = (await c.get("/metrics", headers=AUTH)).text
            assert 'route="/readyz"' in metrics and 'route="/healthz"' in metrics
    finally:
        await service.stop()
        gc.unfreeze()


async def test_readyz_counts_follow_an_ingest_by_another_process(tmp_path: Path) -> None:
    from sotrag.retrieval.index import DocumentIndex
    from tests.hash_embedder import HashEmbedder

    folder = tmp_path / "index"
    index = DocumentIndex.open(folder, create=True)
    index._embedder = HashEmbedder()  # type: ignore[assignment]
    app = create_app(Settings(), pipeline=stand_in_pipeline(), index=index, ui=False)
    service = app.state.service
    await service.start()
    other = DocumentIndex.open(folder)  # as `sotrag ingest` in another process would
    other._embedder = HashEmbedder()  # type: ignore[assignment]
    try:
        async with client_for(app) as c:
            assert (await c.get("/readyz")).json()["index"]["documents"] == 0
            docs = tmp_path / "docs"
            docs.mkdir()
            (docs / "a.md").write_text("# A\n\nSome words about lighthouses and their keepers.\n")
            other.ingest([docs])
            counts = []
            for _ in range(50):
                counts.append((await c.get("/readyz")).json()["index"]["documents"])
                if counts[-1] == 1:
                    break
                await asyncio.sleep(0.1)
            assert counts[-1] == 1, counts
    finally:
        other.close()
        await service.stop()
        gc.unfreeze()


# -- 5. HEAD and the key before 405 --------------------------------------------------------------------------


async def test_head_is_answered_on_get_routes_after_the_key_check() -> None:
    app = create_app(Settings(api_key=SecretStr(KEY)), ui=False)
    async with client_for(app) as c:
        for path in ("/v1/models", "/v1/documents", "/metrics"):
            r = await c.head(path)
            assert r.status_code == 401, (path, r.status_code)
        r = await c.head("/metrics", headers=AUTH)
        assert r.status_code == 200 and r.content == b"", r.status_code
        assert int(r.headers["content-length"]) > 0
        # Without the key a client learns nothing of the routes: 401 before 405 or 404.
        assert (await c.put("/v1/answer")).status_code == 401
        assert (await c.get("/v1/nothing-here")).status_code == 401
        put = await c.put("/v1/answer", headers=AUTH)
        assert put.status_code == 405 and "POST" in put.headers["allow"]
        assert "HEAD" in (await c.post("/v1/models", headers=AUTH)).headers["allow"]



# -- 5. the small ones ---------------------------------------------------------------------------------------


async def test_ui_cancel_and_reset_need_the_login() -> None:
    app = create_app(Settings(api_key=SecretStr(KEY)), ui=True)
    async with client_for(app) as c:
        body = {"session_hash": "abc", "fn_index": 0, "event_id": "x"}
        for path in ("/gradio_api/cancel", "/gradio_api/reset"):
            assert (await c.post(path, json=body)).status_code == 401, path
        assert (await c.post("/login", data={"username": "me", "password": KEY})).status_code == 200
        for path in ("/gradio_api/cancel", "/gradio_api/reset"):
            assert (await c.post(path, json=body)).status_code != 401, path


async def test_ui_uploads_have_the_upload_limit_and_do_not_outlive_the_server(tmp_path: Path) -> None:
    limits = LimitsConfig(max_upload_mb=1.0)
    app = create_app(Settings(limits=limits), pipeline=stand_in_pipeline(), ui=True)
    async with app.router.lifespan_context(app), client_for(app) as c:
        over = await c.post("/gradio_api/upload", files={"files": ("big.md", b"x" * (3 * 2**20 // 2))})
        assert over.status_code == 413, over.text
        ok = await c.post("/gradio_api/upload", files={"files": ("small.md", b"# small\n\nwords\n")})
        assert ok.status_code == 200, ok.text
        stored = Path(ok.json()[0])
        assert stored.exists()
    assert not stored.exists(), stored  # Gradio's cache is deleted when the server stops
    gc.unfreeze()


@pytest.fixture
def hash_index(tmp_path: Path) -> Iterator[Any]:
    from sotrag.retrieval.index import DocumentIndex
    from tests.hash_embedder import HashEmbedder

    index = DocumentIndex.open(tmp_path / "index", create=True)
    index._embedder = HashEmbedder()  # type: ignore[assignment]
    yield index
    index.close()


async def test_different_client_file_names_stay_different_documents(hash_index: Any) -> None:
    app = create_app(Settings(), index=hash_index, ui=False)
    async with client_for(app) as c:
        sources = []
        for name in ("a:b.md", "a?b.md", "a_b.md"):
            r = await c.post("/v1/documents", files={"files": (name, f"# {name}\n\nwords about {name}\n".encode())})
            assert r.status_code == 201, r.text
            assert r.json()["files"][0]["status"] == "added", (name, r.text)
            sources.append(r.json()["files"][0]["source"])
        assert len(set(sources)) == 3, sources
        again = await c.post("/v1/documents", files={"files": ("a:b.md", b"# a:b.md\n\nnew words\n")})
        assert again.json()["files"][0] == {**again.json()["files"][0], "source": sources[0], "status": "updated"}


async def test_the_ui_adds_and_removes_documents_with_the_admin_key(
    hash_index: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # the UI takes only files its upload stored
    s = Settings(api_key=SecretStr(KEY), admin_api_key=SecretStr("admin-key-4567890123"))
    app = create_app(s, index=hash_index, ui=True)
    service = app.state.service
    from sotrag.app.serving.ui import build_ui

    demo = build_ui(service)
    fns = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}

    def stored() -> Path:  # as Gradio's upload route stores and records a file
        (tmp_path / "h").mkdir(exist_ok=True)
        (upload := tmp_path / "h" / "notes.md").write_text("# Notes\n\nwords about lighthouses\n")
        demo.upload_file_set.add(str(upload))
        return upload

    upload = stored()
    refused = await fns["add_files"]([str(upload)], KEY)  # the API key is not enough
    assert "admin key" in refused[2] and hash_index.list_documents() == []
    assert not upload.exists()  # a refused upload is not kept either
    upload = stored()
    added = await fns["add_files"]([str(upload)], "admin-key-4567890123")
    assert "added" in added[2], added[2]
    assert not upload.exists()  # the UI's uploaded copy is not kept once it is in the index
    doc_id = hash_index.list_documents()[0].doc_id
    assert "admin key" in (await fns["remove_doc"](doc_id, "wrong"))[2]
    removed = await fns["remove_doc"](doc_id, "admin-key-4567890123")
    assert "removed" in removed[2] and hash_index.list_documents() == []


async def test_error_details_name_fields_not_validators_and_do_not_echo_kilobytes(hash_index: Any) -> None:
    app = create_app(Settings(), index=hash_index, ui=False)
    async with client_for(app) as c:
        chat = await c.post("/v1/chat/completions", content=b'{"model": "m", "messages": [{"role": "user", '
                            b'"content": "\\ud800"}]}', headers={"content-type": "application/json"})
        filters = await c.post("/v1/answer", content=b'{"question": "hi", "filters": {"\\ud800": "x"}}',
                               headers={"content-type": "application/json"})
        for r in (chat, filters):
            assert r.status_code in (400, 422), r.text
            assert "function-after" not in r.text and "[key]" not in r.text and "Value error" not in r.text, r.text
        long_id = await c.delete("/v1/documents/" + "a" * 10_000)
        assert long_id.status_code == 404 and len(long_id.json()["detail"]) <= 500, len(long_id.text)



def test_the_engine_processes_are_niced_below_the_server() -> None:
    """Every thread of every child process (the engine core and its workers) gets the added niceness; this process
    keeps its own. The server's event loop then wins the CPU over the engine's compute (probes, streams)."""
    import psutil

    from sotrag.app.cli.serve import lower_engine_priority

    script = "import threading, time; [threading.Thread(target=time.sleep, args=(60,)).start() for _ in range(3)]; " \
             "time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        proc = psutil.Process(child.pid)
        for _ in range(100):
            if len(proc.threads()) == 4:
                break
            time.sleep(0.05)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        before = {t.id: os.getpriority(os.PRIO_PROCESS, t.id) for t in proc.threads()}
        lower_engine_priority(5)
        after = {t.id: os.getpriority(os.PRIO_PROCESS, t.id) for t in proc.threads()}
        assert len(after) == 4 and all(after[t] == min(19, before[t] + 5) for t in after), (before, after)
        assert os.getpriority(os.PRIO_PROCESS, 0) == own
    finally:
        child.kill()
        child.wait()
