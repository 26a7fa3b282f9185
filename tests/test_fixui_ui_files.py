"""The UI takes only files that its own upload stored, and its Gradio app answers errors in one short line.

- "Add to index" (Gradio's ``add_files``) trusted the paths a caller wrote: any readable server file was copied,
  ingested and then readable in answers. Now a path outside Gradio's upload folder, a symlink out of it, or a
  file the upload route never stored is refused in one line, and nothing is ingested or deleted.
- Used or refused uploads are deleted; pending ones are bounded.
- Gradio's routes answered a malformed body with pydantic's report echoing the whole input, without a login.

A real server (uvicorn) runs the app: Gradio's queue needs its lifespan. Gradio's upload folder is a temporary
folder of this test (``GRADIO_TEMP_DIR``)."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from sotrag.app.serving.ui_files import UploadedFiles
from sotrag.app.serving.ui_mount import PendingUploads
from sotrag.retrieval.index import DocumentIndex
from tests.fakes import ScriptedEngine, default_skeleton, sampling
from tests.gradio_api import first_data, gradio_call, served
from tests.hash_embedder import HashEmbedder

ADMIN = "admin-key-for-tests-0123"
SECRET = b"# Private\n\nSECRET=top-secret-value, a server file no user may read.\n"
GOOD = b"# Owls\n\nWords about owls and the way they hunt at night.\n"


@dataclass
class Server:
    base: str
    index: DocumentIndex
    uploads: Path
    outside: Path


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("gradio-uploads")
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = old


@pytest.fixture(scope="module")
async def server(upload_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    work = tmp_path_factory.mktemp("fixui")
    outside = work / "outside.md"
    outside.write_bytes(SECRET)
    index = DocumentIndex.open(work / "index", create=True)
    index._embedder = HashEmbedder()  # type: ignore[assignment]
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4), admin_api_key=SecretStr(ADMIN),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4))
    app = create_app(s, pipeline=SoTPipeline(engine, s), index=index, ui=True)
    async with served(app) as base:
        yield Server(base, index, upload_dir, outside)


async def call(base: str, name: str, data: list[Any]) -> tuple[str, Any]:
    """The event (complete or error) and its data, decoded."""
    event, text = await gradio_call(base, name, data)
    return event, first_data(text)


async def upload(base: str, name: str, data: bytes) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post("/gradio_api/upload", files={"files": (name, data)})
    assert r.status_code == 200, r.text
    path = r.json()[0]
    assert isinstance(path, str)
    return path


def file_data(path: str, name: str = "x.md") -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": name}


def sources(index: DocumentIndex) -> list[str]:
    return [d.source for d in index.list_documents()]


def refused_in_one_line(event: str, data: Any) -> str:
    """The error Gradio sends for a refused event, or the add_files status message: one line, no server path."""
    message = str(data["error"]) if event == "error" else str(data[2])
    assert "⚠" in message or event == "error", data
    assert "\n" not in message and len(message) < 200 and "/" not in message.replace("⚠", ""), message
    return message


async def test_a_server_path_is_refused_and_nothing_is_read(server: Server) -> None:
    event, data = await call(server.base, "add_files", [[file_data(str(server.outside), "outside.md")], ADMIN])
    refused_in_one_line(event, data)
    assert "uploads/outside.md" not in sources(server.index)
    assert server.outside.read_bytes() == SECRET  # not deleted either
    assert not [p for p in server.uploads.rglob("*") if p.is_file() and p.read_bytes() == SECRET]  # nor copied


@pytest.mark.parametrize("how", ["symlink", "relative", "folder", "not-uploaded"])
async def test_paths_inside_the_upload_folder_that_no_upload_stored_are_refused(server: Server, how: str) -> None:
    folder = server.uploads / f"planted-{how}"
    folder.mkdir(exist_ok=True)
    path = folder / "x.md"
    if how == "symlink":
        path.unlink(missing_ok=True)
        path.symlink_to(server.outside)
        given = str(path)
    elif how == "relative":
        given = os.path.relpath(server.outside)
    elif how == "folder":
        given = str(server.uploads / f"planted-{how}" / ".." / ".." / server.outside.parent.name / "outside.md")
    else:  # a plain file in the folder, but not one the upload route stored
        path.write_bytes(SECRET)
        given = str(path)
    event, data = await call(server.base, "add_files", [[file_data(given)], ADMIN])
    refused_in_one_line(event, data)
    assert not [s for s in sources(server.index) if "x.md" in s or "outside" in s]
    assert server.outside.read_bytes() == SECRET


async def test_a_refused_path_next_to_a_real_upload_ingests_nothing(server: Server) -> None:
    good = await upload(server.base, "owls.md", GOOD)
    event, data = await call(
        server.base, "add_files", [[file_data(good, "owls.md"), file_data(str(server.outside))], ADMIN]
    )
    refused_in_one_line(event, data)
    assert "uploads/owls.md" not in sources(server.index)


async def test_an_upload_is_added_then_deleted(server: Server) -> None:
    path = await upload(server.base, "barn.md", b"# Barn owls\n\nBarn owls nest in old barns and hunt mice.\n")
    assert Path(path).is_file() and Path(path).is_relative_to(server.uploads)
    event, data = await call(server.base, "add_files", [[file_data(path, "barn.md")], ADMIN])
    assert event == "complete" and "✓" in data[2] and "⚠" not in data[2], data
    assert "uploads/barn.md" in sources(server.index)
    assert not Path(path).exists()  # the upload is not kept past its use


async def test_a_refused_upload_is_deleted(server: Server) -> None:
    path = await upload(server.base, "kept.md", GOOD + b"kept?\n")
    event, data = await call(server.base, "add_files", [[file_data(path, "kept.md")], "wrong-key-0000000000"])
    assert "admin key" in refused_in_one_line(event, data)
    assert not Path(path).exists()
    assert "uploads/kept.md" not in sources(server.index)


@pytest.mark.parametrize("route", ["/gradio_api/vibe-edit", "/gradio_api/vibe-code", "/login",
                                   "/gradio_api/queue/join", "/gradio_api/run/predict"])
async def test_gradio_errors_are_short_and_echo_nothing(server: Server, route: str) -> None:
    body = json.dumps({"data": "A" * 100_000, "username": ["B" * 50_000]})
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as c:
        r = await c.post(route, content=body, headers={"content-type": "application/json"})
        bad_json = await c.post(route, content=b"{" + b"C" * 50_000, headers={"content-type": "application/json"})
    for resp in (r, bad_json):
        assert 400 <= resp.status_code < 500, (route, resp.status_code)
        assert len(resp.content) < 400 and b"AAAA" not in resp.content and b"CCCC" not in resp.content, resp.text
        detail = resp.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "type" not in resp.json(), resp.text
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as c:
        assert (await c.get("/gradio_api/vibe-code")).status_code in (404, 405)  # the code-editing routes are gone


def test_pending_uploads_are_bounded(tmp_path: Path) -> None:
    known: set[str] = set()
    for n in range(5):
        path = tmp_path / f"hash{n}" / f"f{n}.md"
        path.parent.mkdir()
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + n, 1000 + n))
        known.add(str(path))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_bytes(b"keep")
    known.add(str(outside))  # never deleted: not inside the upload folder
    os.utime(outside, (1, 1))
    guard = PendingUploads(None, uploads=UploadedFiles(tmp_path, lambda: known), max_files=3, max_bytes=10_000)
    guard.make_room()
    left = sorted(p.name for p in tmp_path.rglob("*.md"))
    assert left == ["f3.md", "f4.md"]  # room for the next upload: the oldest went first
    assert outside.read_bytes() == b"keep"
    guard = PendingUploads(None, uploads=UploadedFiles(tmp_path, lambda: known), max_files=100, max_bytes=150)
    guard.make_room()
    assert sorted(p.name for p in tmp_path.rglob("*.md")) == ["f4.md"]


async def test_the_upload_route_keeps_pending_uploads_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from sotrag.app.serving import ui_mount

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(ui_mount, "MAX_PENDING_UPLOADS", 2)
    engine = SimpleNamespace(model_name="tiny", max_model_len=4096, load=None)
    app = create_app(Settings(), pipeline=SimpleNamespace(engine=engine, retriever=None, router=None),  # type: ignore[arg-type]
                     ui=True)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8000", timeout=60
    ) as c:
        for n in range(5):
            r = await c.post("/gradio_api/upload", files={"files": (f"f{n}.md", f"# file {n}\n\nwords\n".encode())})
            assert r.status_code == 200, r.text
        kept = sorted(p.name for p in (tmp_path / "gradio").rglob("*.md"))
        assert kept == ["f3.md", "f4.md"], kept  # the bound, the newest kept: room is made before each upload
    gc.unfreeze()
