"""A server's document operations: list, upload and remove, one writer at a time.

Why apart from answering: uploads are a storage job with rules of their own (their own namespace in the index,
staged next to their final place so that putting one in place is a rename, nothing changed on any failure),
and none of it touches the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sotrag.app.serving.api_models import DocumentOut, FileOutcome, IndexStatus, UploadResponse
from sotrag.app.serving.errors import (
    DocumentConflict,
    DocumentRejected,
    DocumentTooLarge,
    StorageUnavailable,
    UnknownDocument,
    UnsupportedDocument,
)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOADS_FOLDER = "uploads"


class Documents:
    """The document operations on one index (``sotrag.retrieval.index.DocumentIndex``, passed to each call)."""

    def __init__(self, max_upload_bytes: int, after_write: Callable[[], None]) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.after_write = after_write  # blocking (run in a thread), under the write lock: e.g. recount the index
        self.write_lock = asyncio.Lock()

    @staticmethod
    def list_documents(index: Any) -> list[DocumentOut]:
        return [_document_out(d) for d in index.list_documents()]

    @staticmethod
    def status(index: Any) -> IndexStatus:
        stats = index.stats()
        return IndexStatus(
            documents=int(stats["documents"]),
            chunks=int(stats["chunks"]),
            embedding_model=str(stats["embedding_model"]),
        )

    def check_upload(self, filename: str | None, size: int | None = None) -> str:
        """The safe file name for an upload, or ``UnsupportedDocument``/``DocumentTooLarge``."""
        from sotrag.retrieval.loaders import SUPPORTED_SUFFIXES, file_kind

        name = _safe_name(filename or "")
        if not name or file_kind(Path(name)) is None:
            kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise UnsupportedDocument(f"unsupported file type {Path(name).suffix or '(none)'!s}; supported: {kinds}")
        if size is not None and size > self.max_upload_bytes:
            raise DocumentTooLarge(f"the file is {size} bytes, over the upload limit of {self.max_upload_bytes} bytes")
        return name

    async def add(self, index: Any, files: Sequence[tuple[str, Path]]) -> UploadResponse:
        """Ingest uploaded files (``(safe name, temporary path)``) into the index; one writer at a time.

        Uploads live in their own namespace: source ``uploads/NAME``, stored as ``<index>/uploads/NAME``, so
        they never replace a document ingested from the user's folders. Re-uploading a name updates that
        upload. A file is moved into place only after its ingest committed: a rejected file (empty, binary,
        unreadable) changes neither the stored file nor the index, and a rejected upload changes nothing.
        """
        from sotrag.retrieval.errors import IndexWriteError
        from sotrag.retrieval.loaders import FoundFile

        start = time.perf_counter()
        names = [name for name, _ in files]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise DocumentConflict(f"two files of this upload would both be stored as {clash[0]!r}; rename one")
        uploads = Path(index.directory) / UPLOADS_FOLDER
        async with self.write_lock:
            try:
                staged = await asyncio.to_thread(_stage_in_folder, uploads, files)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise StorageUnavailable(f"the upload cannot be stored: {reason}; nothing was changed") from None
            try:
                real = uploads.resolve()
                found = [
                    FoundFile(path=real / name, source=f"{UPLOADS_FOLDER}/{name}", root=real.parent, read_from=tmp)
                    for name, tmp in staged
                ]
                try:
                    summary = await asyncio.to_thread(index.add_files, found)
                except IndexWriteError as exc:
                    reason = exc.reason
                    raise StorageUnavailable(f"the index cannot be written: {reason}; nothing was changed") from None
                by_source = {f.source: f for f in summary.files}
                moves = []
                for f, (name, tmp) in zip(found, staged, strict=True):
                    outcome = by_source.get(f.source)
                    target = real / name
                    keep = outcome is not None and (
                        outcome.status in ("added", "updated")
                        or (outcome.status == "unchanged" and not target.exists())
                    )
                    if keep:
                        moves.append((f, tmp, target))
                try:
                    await asyncio.to_thread(_move_or_roll_back, index, moves)
                except StorageUnavailable:
                    await asyncio.to_thread(self.after_write)  # the index was rolled back: recount it
                    raise
            finally:
                for _, tmp in staged:
                    tmp.unlink(missing_ok=True)
            await asyncio.to_thread(self.after_write)
        outcomes = [
            FileOutcome(source=f.source, status=f.status, reason=f.reason, chunks=f.chunks) for f in summary.files
        ]
        bad = [o for o in outcomes if o.status in ("skipped", "failed")]
        if bad and len(bad) == len(outcomes):
            raise DocumentRejected("; ".join(f"{o.source}: {o.reason}" for o in bad))
        sources = {o.source for o in outcomes if o.status not in ("skipped", "failed")}
        documents = [_document_out(d) for d in index.list_documents() if d.source in sources]
        return UploadResponse(files=outcomes, documents=documents, seconds=round(time.perf_counter() - start, 3))

    async def remove(self, index: Any, doc_id: str) -> list[DocumentOut]:
        async with self.write_lock:
            match = [d for d in index.list_documents() if d.doc_id == doc_id]
            if not match:
                raise UnknownDocument(f"no document with id {doc_id!r}")
            removed = await asyncio.to_thread(index.remove, doc_id)
            await asyncio.to_thread(self.after_write)
            uploads = (Path(index.directory) / UPLOADS_FOLDER).resolve()
            for d in removed:
                path = Path(d.path).resolve()
                if path.parent == uploads:  # only files this server stored; never the user's own folders
                    path.unlink(missing_ok=True)
        return [_document_out(d) for d in removed]



def _document_out(d: Any) -> DocumentOut:
    return DocumentOut(
        doc_id=d.doc_id, source=d.source, title=d.title, kind=d.kind, chunks=d.chunks, size=d.size,
        ingested_at=d.ingested_at,
    )


STAGE_PREFIX = ".upload-"  # hidden: an ingest of the uploads folder never picks a half-stored upload up
STALE_STAGE_SECONDS = 3600


def _stage_in_folder(folder: Path, files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Copy each upload next to its final place (a hidden temp file), so that putting it in place later is a
    rename; also clears temp files a killed server left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob(f"{STAGE_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_STAGE_SECONDS:
                old.unlink()
    staged: list[tuple[str, Path]] = []
    try:
        for name, src in files:
            fd, tmp_name = tempfile.mkstemp(prefix=STAGE_PREFIX, suffix=".tmp", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            staged.append((name, tmp))
            shutil.copyfile(src, tmp)
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged


def _move_or_roll_back(index: Any, moves: Sequence[tuple[Any, Path, Path]]) -> None:
    """Put each indexed upload in place (a rename within the folder: atomic, and needs no space). When a rename
    fails, the index entries of the files not in place are undone (the previous upload's file, when there is one,
    is indexed again), so the index never lists a document whose file was not stored: ``StorageUnavailable``."""
    from sotrag.retrieval.loaders import FoundFile

    for i, (_, tmp, target) in enumerate(moves):
        try:
            _put_in_place(tmp, target)
        except OSError as exc:
            for f, _, left in moves[i:]:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    index.remove(f.source)
                    if left.is_file():
                        index.add_files([FoundFile(path=f.path, source=f.source, root=f.root)])
            reason = exc.strerror or type(exc).__name__
            done = "nothing was changed" if i == 0 else "the files before it were stored"
            raise StorageUnavailable(f"the upload cannot be stored: {reason}; {done}") from None


_put_in_place = os.replace  # a name of its own: tests make it fail without failing the index's own renames
MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)


def _cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", "ignore")


def _safe_name(filename: str) -> str:
    """The last path component, with anything but letters, digits, ``._-`` and spaces replaced, at most
    ``MAX_NAME_BYTES`` UTF-8 bytes (cut before the extension, never inside a character). When that is not the
    name as sent (a character replaced, a cut, or folder parts left out), a short hash of the WHOLE name as sent is
    added (``a:b.md`` -> ``a_b-1f0e3dad.md``, ``team-a/notes.md`` -> ``notes-<hash>.md``), so two different client
    names never become one stored name (one user's upload "updating" another's), and the same name sent again
    is stored under the same name (an update). A name sent that looks hashed already (``notes-1f0e3dad.md``) is
    hashed as well, so it cannot land on another name's hashed form."""
    whole = filename.strip()
    sent = whole.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = re.sub(r"[^\w.\- ]", "_", sent).lstrip(".")
    looks_hashed = re.search(r"-[0-9a-f]{8}(\.[^.]*)?\Z", name) is not None  # hashed too: never one's output
    if not name or (name == whole and len(name.encode("utf-8")) <= MAX_NAME_BYTES and not looks_hashed):
        return name
    digest = hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, dot + suffix) if stem else (name, "")
    suffix = _cut_utf8(suffix, 32)  # a longer "extension" is no file type the loaders read anyway
    return f"{_cut_utf8(stem, MAX_NAME_BYTES - len(suffix.encode('utf-8')) - 9)}-{digest}{suffix}"
