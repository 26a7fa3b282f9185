"""The UI's upload answers every documented upload error in one line and refreshes the list: two files of one
name (``DocumentConflict``) and an index that cannot be written (``StorageUnavailable``) reached the user as
Gradio's generic error, with the list not refreshed."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from sotrag.app.config import Settings
from sotrag.app.serving import documents as documents_module
from sotrag.app.serving.app import create_app
from sotrag.app.serving.ui import build_ui
from sotrag.retrieval.index import DocumentIndex
from tests.hash_embedder import HashEmbedder

GOOD = b"# Owls\n\nWords about owls and the way they hunt at night.\n"

AddFiles = Callable[[list[str] | None, str | None], Awaitable[tuple[Any, ...]]]


@pytest.fixture
async def ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[AddFiles, DocumentIndex]]:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # the UI takes only files its upload stored
    index = DocumentIndex.open(tmp_path / "index", create=True)
    index._embedder = HashEmbedder()  # type: ignore[assignment]
    engine = SimpleNamespace(model_name="tiny", max_model_len=4096, load=None)
    pipeline = SimpleNamespace(engine=engine, retriever=None, router=None)
    app = create_app(Settings(), pipeline=pipeline, index=index, ui=False)  # type: ignore[arg-type]
    service = app.state.service
    await service.start()
    try:
        demo = build_ui(service)
        add_files = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "add_files")
        UPLOADED.append(demo.upload_file_set)
        yield cast(AddFiles, add_files), index
    finally:
        await service.stop()
        UPLOADED.clear()
        gc.unfreeze()


UPLOADED: list[set[str]] = []  # the UI's record of what Gradio's upload route stored


def _file(tmp_path: Path, folder: str, name: str, data: bytes = GOOD) -> str:
    """A file as Gradio's upload route stores it: <upload folder>/<a folder of its own>/<name>, recorded."""
    (tmp_path / "gradio" / folder).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gradio" / folder / name
    path.write_bytes(data)
    UPLOADED[-1].add(str(path))
    return str(path)


async def test_two_files_of_one_name_are_one_line(ui: tuple[AddFiles, DocumentIndex], tmp_path: Path) -> None:
    add_files, index = ui
    out = await add_files([_file(tmp_path, "a", "x.md"), _file(tmp_path, "b", "x.md")], None)
    assert out[2].startswith("⚠ ") and "x.md" in out[2] and "\n" not in out[2]
    assert index.list_documents() == []


async def test_storage_failure_is_one_line_and_the_list_is_refreshed(
    ui: tuple[AddFiles, DocumentIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_files, index = ui

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(documents_module, "_put_in_place", full)
    out = await add_files([_file(tmp_path, "c", "owls.md")], None)
    assert out[2].startswith("⚠ ") and "No space left on device" in out[2] and "\n" not in out[2]
    assert index.list_documents() == []


async def test_a_picked_file_that_is_gone_is_one_line(ui: tuple[AddFiles, DocumentIndex], tmp_path: Path) -> None:
    add_files, _ = ui
    out = await add_files([str(tmp_path / "gone.md")], None)
    assert out[2].startswith("⚠ ") and "\n" not in out[2]


@pytest.mark.parametrize("parts", [[("files", ("", GOOD))], [("files", ("a.md", GOOD)), ("files", ("", b"y"))]])
async def test_rest_upload_without_a_file_name_is_a_clean_422(parts: list[tuple[str, tuple[str, bytes]]]) -> None:
    from tests.scripted_app import scripted_client

    async with scripted_client() as (client, _):
        r = await client.post("/v1/documents", files=parts)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "no file name" in detail and "<class" not in detail and "\n" not in detail
