"""Writing an index: ingesting files (new, changed, gone) and removing documents, crash-safe.

An ingest commits in batches of whole files, each batch one SQLite transaction that bumps the store's generation,
then that generation's FAISS file (``IndexVectors.persist``): see ``sotrag.retrieval.index`` for why a process
killed at any point leaves a consistent index. Every write holds the folder's writer lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sotrag.retrieval import vectors
from sotrag.retrieval.chunking import document_title, make_chunk_id, make_doc_id, split_documents, text_hash
from sotrag.retrieval.embedder import Embedder
from sotrag.retrieval.errors import DocumentNotFoundError, LoadError
from sotrag.retrieval.index_config import IndexOptions
from sotrag.retrieval.index_files import STORE_FILE, crash_point, storage_errors, writer_lock
from sotrag.retrieval.index_vectors import IndexVectors
from sotrag.retrieval.loaders import FoundFile, content_hash, discover, file_kind, load_file
from sotrag.retrieval.store import DocumentRow, Store

# An ingest commits at least batch_chunks chunks at a time, and at least this share of the index, so re-writing
# the FAISS file stays a small cost.
BATCH_SHARE = 0.05
ProgressCallback = Callable[[str, int, int], None]  # (stage, advance, total)
ChunkRecord = tuple[str, int, str, str, str, dict[str, Any]]  # chunk_id, position, heading, text, hash, meta
# the new document row, its chunks, their embed texts, the status, and the rows of the same file it replaces
_Pending = tuple[DocumentRow, list[ChunkRecord], list[str], Literal["added", "updated"], list[DocumentRow]]


@dataclass
class FileResult:
    source: str
    status: Literal["added", "updated", "unchanged", "skipped", "failed", "removed"]
    reason: str = ""
    chunks: int = 0


def _utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """``name`` with each byte that is not UTF-8 (a lone surrogate from the file system) written as ``\\xff``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_cached: int = 0
    embed_seconds: float = 0.0
    total_seconds: float = 0.0
    index_type: str = ""

    def by_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def counts(self) -> dict[str, int]:
        keys = ("added", "updated", "unchanged", "skipped", "failed", "removed")
        return {k: len(self.by_status(k)) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts}


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    source: str
    title: str
    kind: str
    chunks: int
    size: int
    content_hash: str
    ingested_at: float
    path: str

    @classmethod
    def from_row(cls, r: DocumentRow) -> DocumentInfo:
        return cls(r.doc_id, r.source, r.title, r.kind, r.n_chunks, r.size, r.content_hash, r.ingested_at, r.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



class IndexWriter:
    """The writes of one index folder. ``embedder()`` gives the index's embedder (loaded on first use)."""

    def __init__(
        self, directory: Path, vector_state: IndexVectors, embedder: Callable[[], Embedder], options: IndexOptions
    ) -> None:
        self.directory = directory
        self._vectors = vector_state
        self._embedder = embedder
        self.chunking = options.chunking
        self.max_file_bytes = options.max_file_bytes
        self.batch_chunks = max(1, options.batch_chunks)

    def ingest(
        self,
        paths: Sequence[str | Path],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestSummary:
        """Add new files, replace changed ones, leave unchanged ones alone; ``prune`` removes files that are
        gone from the ingested folders. Commits in batches of whole files (see the module doc): a killed or
        failed ingest keeps its committed batches, and running it again resumes where it stopped."""
        t0 = time.perf_counter()
        summary = IngestSummary()
        with storage_errors(self.directory), writer_lock(self.directory):
            found = list(discover(paths, include, exclude))
            roots = None
            if prune:
                roots = {str(Path(p).expanduser().resolve()) for p in paths if Path(p).expanduser().is_dir()}
            self._ingest_found(found, roots, progress, summary)
        summary.total_seconds = round(time.perf_counter() - t0, 3)
        return summary

    def add_files(self, files: Sequence[FoundFile], progress: ProgressCallback | None = None) -> IngestSummary:
        """Ingest files described exactly (identity ``path``, ``source``, bytes from ``read_from``): uploads."""
        t0 = time.perf_counter()
        summary = IngestSummary()
        with storage_errors(self.directory), writer_lock(self.directory):
            self._ingest_found(files, None, progress, summary)
        summary.total_seconds = round(time.perf_counter() - t0, 3)
        return summary

    def _ingest_found(
        self,
        found: Sequence[FoundFile],
        prune_roots: set[str] | None,
        progress: ProgressCallback | None,
        summary: IngestSummary,
    ) -> None:
        store = Store(self.directory / STORE_FILE)
        try:
            store.ensure_indexes()
            self._ingest_locked(store, found, prune_roots, progress, summary)
        finally:
            store.close()

    def _ingest_locked(
        self,
        store: Store,
        found: Sequence[FoundFile],
        prune_roots: set[str] | None,
        progress: ProgressCallback | None,
        summary: IngestSummary,
    ) -> None:
        base, _ = self._vectors.load(store)
        committed = False
        seen: dict[str, str] = {}  # identity path -> source, in this ingest
        taken: set[str] = set()  # sources given to new documents of this ingest
        batch: list[_Pending] = []
        batch_size = 0
        if progress:
            progress("read", 0, len(found))
        for f in found:
            result = self._prepare_file(store, f, seen, taken)
            if isinstance(result, FileResult):
                summary.files.append(result)
            else:
                batch.append(result)
                batch_size += len(result[1])
                if batch_size >= max(self.batch_chunks, int(BATCH_SHARE * store.count_chunks())):
                    base = self._commit_batch(store, base, batch, [], summary, progress)
                    committed = True
                    batch, batch_size = [], 0
            if progress:
                progress("read", 1, len(found))

        to_prune: list[DocumentRow] = []
        if prune_roots is not None:
            present = {str(f.path) for f in found}
            to_prune = [d for d in store.documents() if d.root in prune_roots and d.path not in present]
        if batch or to_prune:
            base = self._commit_batch(store, base, batch, to_prune, summary, progress)
            committed = True
        summary.index_type = vectors.kind_of(base)
        if committed:
            self._vectors.adopt(base, store.generation())
        elif base.ntotal != store.count_chunks() or not self._vectors.file(store.generation()).exists():
            self._vectors.persist(base, store.generation())

    def _commit_batch(
        self,
        store: Store,
        base: vectors.FaissIndex,
        batch: Sequence[_Pending],
        to_prune: Sequence[DocumentRow],
        summary: IngestSummary,
        progress: ProgressCallback | None,
    ) -> vectors.FaissIndex:
        """Embed what the store does not have yet (content-hash cache, each distinct text once), then write
        the batch in one transaction and its FAISS file; returns the updated vector index."""
        hashes = [h for _, chunks, _, _, _ in batch for (_, _, _, _, h, _) in chunks]
        cache = store.cached_embeddings(hashes)
        todo: dict[str, str] = {}
        for _, chunks, texts, _, _ in batch:
            for (_, _, _, _, h, _), t in zip(chunks, texts, strict=True):
                if h not in cache:
                    todo.setdefault(h, t)
        summary.chunks_cached += len(hashes) - sum(1 for h in hashes if h in todo)
        if todo:
            if progress:
                progress("embed", 0, len(todo))
            t_embed = time.perf_counter()
            vecs = self._embedder().embed(
                list(todo.values()), (lambda n: progress("embed", n, len(todo))) if progress else None
            )
            summary.embed_seconds = round(summary.embed_seconds + time.perf_counter() - t_embed, 3)
            cache.update(zip(todo.keys(), vecs, strict=True))
        summary.chunks_embedded += len(todo)
        crash_point("after_embed")

        removed: list[int] = []
        added: list[int] = []
        added_vecs: list[np.ndarray] = []
        results: list[FileResult] = []
        with store.transaction() as conn:
            for doc, chunks, _, status, replaces in batch:
                for old in replaces:
                    removed.extend(store.delete_document(conn, old.doc_id))
                embs = np.vstack([cache[h] for (_, _, _, _, h, _) in chunks])
                added.extend(store.insert_document(conn, doc, chunks, embs))
                added_vecs.append(embs)
                results.append(FileResult(doc.source, status, chunks=len(chunks)))
                crash_point("mid_write")
            for d in to_prune:
                removed.extend(store.delete_document(conn, d.doc_id))
                results.append(FileResult(d.source, "removed", "no longer in the ingested folder", d.n_chunks))
            gen = store.generation() + 1
            store.set_meta(conn, "generation", str(gen))
            crash_point("before_commit")
        crash_point("after_commit")
        summary.files.extend(results)
        summary.chunks_written += sum(len(chunks) for _, chunks, _, _, _ in batch)
        new_vecs = np.vstack(added_vecs) if added_vecs else np.zeros((0, self._vectors.dim), np.float32)
        index = self._vectors.apply_changes(store, base, removed, added, new_vecs)
        self._vectors.persist(index, gen, share=False)
        crash_point("batch_committed")
        return index

    def _prepare_file(self, store: Store, f: FoundFile, seen: dict[str, str], taken: set[str]) -> FileResult | _Pending:
        source = f.source
        if not _utf8_name(source):  # SQLite and the summary need text: this one file fails, the others go on
            return FileResult(printable_name(source), "failed", "the file name is not valid UTF-8")
        if f.skip_reason:
            return FileResult(source, "skipped", f.skip_reason)
        kind = file_kind(Path(source))
        if kind is None:
            return FileResult(source, "skipped", f"unsupported file type {Path(source).suffix or '(no extension)'}")
        identity = str(f.path)
        if identity in seen:
            return FileResult(source, "skipped", f"the same file as {seen[identity]} in this ingest")
        seen[identity] = source
        read_from = f.read_from or f.path
        try:
            size = read_from.stat().st_size
            if size > self.max_file_bytes:
                return FileResult(
                    source, "skipped", f"file is {size} bytes, above the {self.max_file_bytes}-byte limit"
                )
            data = read_from.read_bytes()
        except OSError as exc:
            return FileResult(source, "failed", f"cannot read: {exc.strerror or exc}")
        if not data.strip():
            return FileResult(source, "skipped", "empty file")
        digest = content_hash(data)
        olds = store.documents_by_path(identity)
        old = olds[0] if olds else None
        if old is not None and old.content_hash == digest and len(olds) == 1:
            return FileResult(old.source, "unchanged", chunks=old.n_chunks)
        try:
            docs = load_file(read_from, data, kind)
            title = document_title(docs, kind, Path(source).stem)
            chunks = split_documents(docs, kind, title, self.chunking)
        except LoadError as exc:
            return FileResult(source, "failed", str(exc))
        except Exception as exc:  # one bad file must not stop the others
            return FileResult(source, "failed", f"{type(exc).__name__}: {exc}")
        if not chunks:
            return FileResult(source, "skipped", "no text could be extracted")
        if old is not None:  # the same file again: it keeps its id and the name users know it by
            doc_id, source = old.doc_id, old.source
        else:
            doc_id, source = make_doc_id(identity), self._unique_source(store, f, taken)
            taken.add(source)
        rows = []
        texts = []
        for c in chunks:
            embed_text = c.embed_text
            rows.append(
                (
                    make_chunk_id(doc_id, c.position, c.text),
                    c.position,
                    c.heading,
                    c.text,
                    text_hash(embed_text),
                    c.metadata,
                )
            )
            texts.append(embed_text)
        doc = DocumentRow(doc_id, source, identity, str(f.root), kind, title, digest, len(data), len(rows), time.time())
        status: Literal["added", "updated"] = "updated" if old is not None else "added"
        return doc, rows, texts, status, olds

    @staticmethod
    def _unique_source(store: Store, f: FoundFile, taken: set[str]) -> str:
        """``f.source``, or, when another file already has that name, the shortest longer path that is free
        (``b/README.md`` beside ``README.md``), else the absolute path: two files never share a source."""
        location = (f.root / f.source).parts
        depth = len(Path(f.source).parts)
        candidates = [f.source] + ["/".join(location[-n:]) for n in range(depth + 1, len(location))]
        candidates.append((f.root / f.source).as_posix())
        for candidate in candidates:
            if candidate not in taken and store.document_by_source(candidate) is None:
                return candidate
        return f"{candidates[-1]}#{make_doc_id(str(f.path))}"

    def remove(self, source: str) -> list[DocumentInfo]:
        """Remove a document by source path, glob over sources, doc id or file path; returns what was removed."""
        with storage_errors(self.directory), writer_lock(self.directory):
            store = Store(self.directory / STORE_FILE)
            try:
                docs = store.documents()
                if any(c in source for c in "*?["):
                    import fnmatch

                    victims = [d for d in docs if fnmatch.fnmatchcase(d.source, source)]
                else:
                    victims = [d for d in docs if source in (d.source, d.doc_id, d.path)]
                if not victims:
                    raise DocumentNotFoundError(f"no document {source!r} in the index at {self.directory}")
                base, _ = self._vectors.load(store)
                removed: list[int] = []
                with store.transaction() as conn:
                    for d in victims:
                        removed.extend(store.delete_document(conn, d.doc_id))
                    gen = store.generation() + 1
                    store.set_meta(conn, "generation", str(gen))
                empty = np.zeros((0, self._vectors.dim), np.float32)
                index = self._vectors.apply_changes(store, base, removed, [], empty)
                self._vectors.persist(index, gen)
            finally:
                store.close()
        return [DocumentInfo.from_row(d) for d in victims]

    # -- reading ------------------------------------------------------------------------------------------
