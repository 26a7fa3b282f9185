"""Issue #11, the data side: what an ingest or an upload accepts, how documents are identified, and what a
failed write leaves behind. Real MiniLM, FAISS and SQLite; the failures are real (a full or read-only tmpfs
when the tests run as root, SQLite's own size limit, FAISS writing to /dev/full) or injected at the write."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import random
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotrag.retrieval import store as store_module
from sotrag.retrieval import vectors
from sotrag.retrieval.errors import IndexLockedError, IndexWriteError
from sotrag.retrieval.index import DocumentIndex
from sotrag.retrieval.index_files import writer_lock
from sotrag.retrieval.loaders import NotTextError, decode_text

DOCS = Path(__file__).parent / "data" / "retrieval_docs"
ROSES = (DOCS / "garden" / "roses.md").read_bytes()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inner.txt", "hello lighthouse keeper " * 50)
    return buf.getvalue()


def _chunks_by_source(idx: DocumentIndex) -> dict[str, int]:
    return {d.source: d.chunks for d in idx.list_documents()}


def _assert_consistent(idx: DocumentIndex) -> None:
    import faiss

    store_ids = {r[0] for r in idx._store.conn.execute("SELECT vector_id FROM chunks")}
    fts_ids = {r[0] for r in idx._store.conn.execute("SELECT rowid FROM chunks_fts")}
    vec = idx._vectors.current()
    assert set(faiss.vector_to_array(vec.id_map).tolist()) == store_ids == fts_ids
    assert idx._store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- 8. binary content and encodings -----------------------------------------------------------------------


def test_decode_refuses_binary_and_reads_legacy_encodings() -> None:
    rng = random.Random(11)
    for size in (40, 400, 4000):
        noisy = bytes(rng.randrange(256) for _ in range(size))
        with pytest.raises(NotTextError, match=r"binary|not UTF-8"):
            decode_text(noisy)
        with pytest.raises(NotTextError):  # no NUL byte to give it away
            decode_text(noisy.replace(b"\x00", b"\x01"))
    with pytest.raises(NotTextError, match="ZIP"):
        decode_text(_zip_bytes())
    cases = {
        "café": "cp1252",  # the example: it used to come back as "cafй"
        "Le phare de Cordouan, où le gardien écrit son journal. Très été.": "latin-1",
        "Grüße aus München, schöne Straße.": "latin-1",
        "Привет, маяк стоит на скале у моря.": "cp1251",
        "Příliš žluťoučký kůň úpěl ďábelské ódy.": "cp1250",
        "灯台守は夕暮れにランプを灯す。灯台は岬の先にある。": "shift_jis",
    }
    for text, codec in cases.items():
        assert decode_text(text.encode(codec))[0] == text, codec
    assert decode_text("BOM café".encode("utf-16"))[0] == "BOM café"
    assert decode_text("plain café".encode())[0] == "plain café"


def test_ingest_refuses_binary_files_with_the_reason(tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "noise.txt").write_bytes(random.Random(1).randbytes(3000))
    (src / "archive.md").write_bytes(_zip_bytes())
    (src / "page.html").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (src / "menu.txt").write_bytes("Un café crème et un croissant, s'il vous plaît.".encode("cp1252"))
    (src / "good.md").write_text("# Lighthouse\n\nThe keeper winds the clockwork lamp at dusk.\n")
    idx = DocumentIndex.open(tmp_path / "index", create=True)
    status = {f.source: (f.status, f.reason) for f in idx.ingest([src]).files}
    assert status["noise.txt"][0] == "failed" and "binary" in status["noise.txt"][1]
    assert status["archive.md"] == ("failed", "binary content, not text: a ZIP archive (also docx, xlsx, epub, jar)")
    assert status["page.html"][0] == "failed" and "PNG" in status["page.html"][1]
    assert status["menu.txt"][0] == status["good.md"][0] == "added"
    assert {d.source for d in idx.list_documents()} == {"menu.txt", "good.md"}
    hit = idx.search("café crème", k=1, mode="lexical")[0]
    assert hit.source == "menu.txt" and "café crème" in hit.text


# -- 6. document identity ----------------------------------------------------------------------------------


def test_same_relative_path_in_two_folders_are_two_documents(tmp_path: Path) -> None:
    for folder, body in (("a", "Apples ripen in the orchard in autumn."), ("b", "Bees sleep in the hive in winter.")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "README.md").write_text(f"# {folder}\n\n{body}\n")
    idx = DocumentIndex.open(tmp_path / "index", create=True)
    idx.ingest([tmp_path / "a" / "README.md"])
    ids = {d.source: d.doc_id for d in idx.list_documents()}
    second = idx.ingest([tmp_path / "b" / "README.md"])
    assert [(f.source, f.status) for f in second.files] == [("b/README.md", "added")]
    docs = {d.source: d for d in idx.list_documents()}
    assert set(docs) == {"README.md", "b/README.md"}
    assert docs["README.md"].doc_id == ids["README.md"]  # the first kept its id and name
    assert idx.search("orchard apples", k=1, mode="lexical")[0].source == "README.md"
    assert idx.search("hive bees", k=1, mode="lexical")[0].source == "b/README.md"
    # Both again, and an edit: each is found by its own file, never by its relative path.
    (tmp_path / "a" / "README.md").write_text("# a\n\nApples and pears ripen in the orchard.\n")
    again = idx.ingest([tmp_path / "a" / "README.md", tmp_path / "b" / "README.md"])
    assert {(f.source, f.status) for f in again.files} == {("README.md", "updated"), ("b/README.md", "unchanged")}
    assert {d.source: d.doc_id for d in idx.list_documents()}["README.md"] == ids["README.md"]
    # The same file through its folder is the same document, not a copy.
    assert idx.ingest([tmp_path / "b"]).counts == {**again.counts, "updated": 0, "unchanged": 1}
    assert len(idx.list_documents()) == 2
    _assert_consistent(idx)


def test_symlinks_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe vault code is written on the lighthouse wall.\n")
    (outside / "deep").mkdir()
    (outside / "deep" / "more.md").write_text("# More\n\nAnother private note about the vault.\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "inside.md").write_text("# Inside\n\nThe keeper winds the clockwork lamp at dusk.\n")
    (docs / "leak.md").symlink_to(outside / "secret.md")
    (docs / "leakdir").symlink_to(outside / "deep", target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "inside.md")  # inside the folder: the same file as inside.md
    idx = DocumentIndex.open(tmp_path / "index", create=True)
    status = {f.source: (f.status, f.reason) for f in idx.ingest([docs]).files}
    assert status["leak.md"] == ("skipped", "symlink to outside the folder")
    assert not any(s.startswith("leakdir") for s in status)
    assert status["alias.md"] == ("skipped", "the same file as inside.md in this ingest")
    assert [d.source for d in idx.list_documents()] == ["inside.md"]
    assert not idx.search("vault code", k=5, mode="lexical")


# -- 6. uploads ----------------------------------------------------------------------------------------------


def _service(index: DocumentIndex):  # -> Service
    from sotrag.app.config import Settings
    from sotrag.app.serving.service import Service

    return Service(Settings(), index=index, index_dir=index.directory)


def _upload(service, tmp_path: Path, *files: tuple[str, bytes]):  # -> UploadResponse
    staged: list[tuple[str, Path]] = []
    for name, data in files:
        path = tmp_path / f"staged-{len(staged)}-{name}"
        path.write_bytes(data)
        staged.append((name, path))
    return asyncio.run(service.add_documents(staged))


def _uploads_state(idx: DocumentIndex) -> tuple[dict[str, int], dict[str, bytes]]:
    folder = idx.directory / "uploads"
    stored = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}
    return _chunks_by_source(idx), stored


def test_uploads_never_replace_ingested_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    long_doc = "# Alternatives\n\n" + "\n\n".join(
        f"## Option {i}\n\n" + f"Option {i} trades lamp oil for clockwork in its own way, with care. " * 12
        for i in range(8)
    )
    (docs / "alternatives.md").write_text(long_doc)
    idx = DocumentIndex.open(tmp_path / "index", create=True)
    idx.ingest([docs])
    before = _chunks_by_source(idx)["alternatives.md"]
    assert before > 3
    service = _service(idx)
    response = _upload(service, tmp_path, ("alternatives.md", b"# Alternatives\n\nA short uploaded note.\n"))
    assert [(f.source, f.status) for f in response.files] == [("uploads/alternatives.md", "added")]
    chunks = _chunks_by_source(idx)
    assert chunks["alternatives.md"] == before and chunks["uploads/alternatives.md"] == 1
    assert (idx.directory / "uploads" / "alternatives.md").read_bytes().startswith(b"# Alternatives\n\nA short")
    _assert_consistent(idx)


def test_a_rejected_upload_changes_nothing(tmp_path: Path) -> None:
    from sotrag.app.serving.service import DocumentConflict, DocumentRejected

    idx = DocumentIndex.open(tmp_path / "index", create=True)
    service = _service(idx)
    assert _upload(service, tmp_path, ("roses.md", ROSES)).files[0].status == "added"
    state = _uploads_state(idx)
    for bad in (b"", b"  \n", _zip_bytes(), random.Random(2).randbytes(2000)):
        with pytest.raises(DocumentRejected):
            _upload(service, tmp_path, ("roses.md", bad))
        assert _uploads_state(idx) == state
    with pytest.raises(DocumentConflict):  # two files that would be stored under one name
        _upload(service, tmp_path, ("notes.md", b"# One\n\nfirst\n"), ("notes.md", b"# Two\n\nsecond\n"))
    assert _uploads_state(idx) == state
    with writer_lock(idx.directory), pytest.raises(IndexLockedError):  # another writer: nothing orphaned
        _upload(service, tmp_path, ("tomatoes.md", (DOCS / "garden" / "tomatoes.md").read_bytes()))
    assert _uploads_state(idx) == state
    assert not [p for p in (idx.directory / "uploads").iterdir() if p.name.startswith(".")]
    # Partly good: the good file lands, the bad one changes nothing.
    mixed = _upload(service, tmp_path, ("roses.md", b""), ("bread.md", (DOCS / "kitchen" / "bread.md").read_bytes()))
    outcomes = {(f.source, f.status) for f in mixed.files}
    assert outcomes == {("uploads/roses.md", "skipped"), ("uploads/bread.md", "added")}
    chunks, stored = _uploads_state(idx)
    assert stored["roses.md"] == ROSES and chunks["uploads/roses.md"] == state[0]["uploads/roses.md"]
    # Re-uploading a name updates that upload (the same document).
    doc_id = {d.source: d.doc_id for d in idx.list_documents()}["uploads/roses.md"]
    edited = ROSES.replace(b"roses", b"climbing roses")
    assert _upload(service, tmp_path, ("roses.md", edited)).files[0].status == "updated"
    assert {d.source: d.doc_id for d in idx.list_documents()}["uploads/roses.md"] == doc_id
    assert (idx.directory / "uploads" / "roses.md").read_bytes() == edited
    _assert_consistent(idx)


# -- disk full and unwritable folders --------------------------------------------------------------------------


def _snapshot(idx_dir: Path) -> tuple[list[tuple[str, int]], int]:
    idx = DocumentIndex.open(idx_dir)
    try:
        _assert_consistent(idx)
        return sorted(_chunks_by_source(idx).items()), idx._store.generation()
    finally:
        idx.close()


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _garden_index(where: Path) -> Path:
    idx = DocumentIndex.open(where, create=True)
    idx.ingest([DOCS / "garden"])
    idx.close()
    return where


def test_disk_full_gives_a_clear_error_and_keeps_the_index(tmp_path: Path) -> None:
    """A real ENOSPC: the index lives on a small tmpfs, filled up to a few KiB before the next ingest."""
    with _tmpfs(tmp_path / "small", "8m") as mnt:
        index_dir = _garden_index(mnt / "index")
        before = _snapshot(index_dir)
        filler = mnt / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        os.truncate(filler, max(0, filler.stat().st_size - 48 * 1024))  # room to open, not to write
        idx = DocumentIndex.open(index_dir)
        with pytest.raises(IndexWriteError, match="no space left on device") as err:
            idx.ingest([DOCS / "kitchen"])
        assert "intact" in str(err.value) and "\n" not in str(err.value)
        idx.close()
        assert _snapshot(index_dir) == before  # still full: readable, and as it was
        filler.unlink()  # space again: the same ingest now completes
        idx = DocumentIndex.open(index_dir)
        assert idx.ingest([DOCS / "kitchen"]).counts["added"] == 3
        _assert_consistent(idx)
        idx.close()


def test_sqlite_full_and_faiss_enospc_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root: SQLite's own page limit (a real SQLITE_FULL) and the FAISS file written into /dev/full."""
    index_dir = _garden_index(tmp_path / "index")
    before = _snapshot(index_dir)
    real_init = store_module.Store.__init__

    def tiny_store(self: store_module.Store, path: Path, readonly: bool = False) -> None:
        real_init(self, path, readonly)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages}")  # the store may not grow at all

    more = tmp_path / "more"
    more.mkdir()
    (more / "log.md").write_text("# Log\n\n" + "The keeper trimmed the wick and noted the wind. " * 400)
    with monkeypatch.context() as m:
        m.setattr(store_module.Store, "__init__", tiny_store)
        idx = DocumentIndex.open(index_dir)
        with pytest.raises(IndexWriteError, match="no space left on device"):
            idx.ingest([more])
        idx.close()
    assert _snapshot(index_dir) == before

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    real_write = vectors._write_file
    with monkeypatch.context() as m:  # the FAISS file's bytes go to /dev/full: the kernel's own ENOSPC
        m.setattr(vectors, "_write_file", lambda path, data: real_write(Path("/dev/full"), data))
        idx = DocumentIndex.open(index_dir)
        with pytest.raises(IndexWriteError, match="no space left on device"):
            idx.remove("tomatoes.md")
        idx.close()
    # The store committed the removal; the FAISS file it could not write is rebuilt from the store.
    after = _snapshot(index_dir)
    assert after[0] == [s for s in before[0] if s[0] != "tomatoes.md"]
    assert not list(index_dir.glob(".*.tmp-*"))


def test_unwritable_index_folder_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores permission bits: make the folder a read-only mount instead
        with _tmpfs(tmp_path / "ro", "16m") as mnt:
            index_dir = _garden_index(mnt / "index")
            before = _snapshot(index_dir)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            _check_read_only(index_dir, before, mnt / "fresh")
    else:
        index_dir = _garden_index(tmp_path / "index")
        before = _snapshot(index_dir)
        fresh = tmp_path / "locked-parent"
        fresh.mkdir()
        for p in (index_dir, fresh):
            p.chmod(0o555)
        for f in index_dir.iterdir():
            f.chmod(0o444)
        try:
            _check_read_only(index_dir, before, fresh / "new")
        finally:
            for p in (index_dir, fresh, *index_dir.iterdir()):
                p.chmod(0o755)


def _check_read_only(index_dir: Path, before: tuple[list[tuple[str, int]], int], fresh: Path) -> None:
    with pytest.raises(IndexWriteError, match="not writable") as err:
        DocumentIndex.open(index_dir, create=True).ingest([DOCS / "kitchen"])
    assert "\n" not in str(err.value)
    with pytest.raises(IndexWriteError, match="not writable"):
        DocumentIndex.open(fresh, create=True)
    assert _snapshot(index_dir)[0] == before[0]


def test_write_errors_name_their_cause() -> None:
    from sotrag.retrieval.index import storage_error

    d = Path("/idx")
    full = storage_error(OSError(errno.ENOSPC, "No space left on device"), d)
    assert isinstance(full, IndexWriteError) and full.reason == "no space left on device"
    assert "not writable" in str(storage_error(OSError(errno.EROFS, "Read-only file system"), d))
    assert "not writable" in str(storage_error(sqlite3.OperationalError("attempt to write a readonly database"), d))
    assert "damaged" in str(storage_error(sqlite3.DatabaseError("database disk image is malformed"), d))
