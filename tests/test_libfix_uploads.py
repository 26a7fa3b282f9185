"""Uploads never leave the index and the folder apart: a long multibyte name is cut to the file-name limit in
UTF-8 bytes (it was a 500, ``File name too long``, with the document already indexed), and a file that cannot be
put in place after indexing undoes its index entry (the previous upload's, when there was one, comes back)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sotrag.app.serving import documents as documents_module
from sotrag.app.serving.documents import MAX_NAME_BYTES, Documents, _safe_name
from sotrag.app.serving.errors import StorageUnavailable
from sotrag.retrieval.index import DocumentIndex

TEXT = "# Roses\n\nPrune roses in late winter, just above an outward-facing bud, to keep the centre open.\n"


@pytest.mark.parametrize(
    "sent", ["é" * 150 + ".md", "x" * 300 + ".md", "日本" * 60 + ".txt", "a:" + "ü" * 200 + ".md", "é" * 127 + ".md"]
)
def test_safe_names_fit_the_limit_in_bytes_and_keep_the_extension(sent: str) -> None:
    name = _safe_name(sent)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.endswith(sent.rsplit(".", 1)[1]) and name.encode("utf-8").decode("utf-8") == name
    if len(sent.encode("utf-8")) <= MAX_NAME_BYTES and ":" not in sent:
        assert name == sent  # a name that fits is kept as sent
    else:
        assert name != _safe_name(sent[:-4] + "Z.md")  # cut names keep a hash of the whole name


@pytest.fixture
def index(tmp_path: Path) -> DocumentIndex:
    return DocumentIndex.open(tmp_path / "index", create=True)


def _upload(tmp_path: Path, text: str) -> Path:
    src = tmp_path / f"src-{len(list(tmp_path.iterdir()))}"
    src.write_text(text)
    return src


async def test_a_long_multibyte_name_is_stored_and_indexed(index: DocumentIndex, tmp_path: Path) -> None:
    docs = Documents(1 << 20, lambda: None)
    name = docs.check_upload("é" * 150 + ".md")
    response = await docs.add(index, [(name, _upload(tmp_path, TEXT))])
    assert [f.status for f in response.files] == ["added"]
    assert (Path(index.directory) / "uploads" / name).read_text() == TEXT


async def test_a_file_not_put_in_place_undoes_its_index_entry(
    index: DocumentIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recounts: list[int] = []
    docs = Documents(1 << 20, lambda: recounts.append(1))
    await docs.add(index, [("kept.md", _upload(tmp_path, TEXT))])
    before = {d.source: d.chunks for d in index.list_documents()}

    def full(src: object, dst: object) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(documents_module, "_put_in_place", full)
    with pytest.raises(StorageUnavailable, match="nothing was changed") as caught:
        await docs.add(index, [("new.md", _upload(tmp_path, TEXT + "new\n"))])
    assert "\n" not in str(caught.value)
    with pytest.raises(StorageUnavailable):  # an update: the previous upload stays indexed, and its file stays
        await docs.add(index, [("kept.md", _upload(tmp_path, "# Other\n\nSomething else entirely, about tomatoes.\n"))])
    assert {d.source: d.chunks for d in index.list_documents()} == before
    assert (Path(index.directory) / "uploads" / "kept.md").read_text() == TEXT
    assert not (Path(index.directory) / "uploads" / "new.md").exists()
    hits = index.search("tomatoes", k=3, mode="lexical")
    assert not any("tomatoes" in h.text for h in hits)
    assert len(recounts) == 3
