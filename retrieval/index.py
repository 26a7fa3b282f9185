"""``DocumentIndex``: the one object the CLI, the server and the pipeline use to ingest and search.

On disk (one folder)::

    store.sqlite          documents, chunks, embeddings, FTS5 table, meta (model, dim, generation)
    vectors-<gen>.faiss   the FAISS index for store generation <gen> (written atomically)
    LOCK                  flock'ed by the one writer

Crash safety: an ingest commits in batches of whole files (a removal in one step); each batch is one SQLite
transaction that also bumps ``generation``, and only after it commits is ``vectors-<gen>.faiss`` written
(temp file, fsync, rename, fsync folder). A reader loads the FAISS file of the store's current generation,
and if it is missing (a writer died between the two steps) or does not match the store, rebuilds it from the
embeddings in the store. So a process killed at any point leaves a consistent index holding every committed
batch, never half a file; a re-run finds the committed files unchanged and embeds only the rest. Writers take
an exclusive ``flock``; a second writer gets :class:`IndexLockedError` at once. A write that fails (disk full,
read-only folder) raises :class:`IndexWriteError` and leaves the index as its last commit left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sotrag.retrieval import vectors
from sotrag.retrieval.chunking import (
    ChunkingConfig,
    document_title,
    make_chunk_id,
    make_doc_id,
    split_documents,
    text_hash,
)
from sotrag.retrieval.embedder import DEFAULT_EMBEDDING_MODEL, Embedder, resolve_embedding_model
from sotrag.retrieval.errors import (
    DocumentNotFoundError,
    EmbeddingModelMismatchError,
    EmptyIndexError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    IndexWriteError,
    LoadError,
    RetrievalError,
)
from sotrag.retrieval.fusion import mmr, reciprocal_rank_fusion
from sotrag.retrieval.loaders import (
    DEFAULT_MAX_FILE_BYTES,
    FoundFile,
    content_hash,
    discover,
    file_kind,
    load_file,
)
from sotrag.retrieval.store import DocumentRow, Store
from sotrag.retrieval.types import Passage

SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[str, ...] = ("dense", "lexical", "hybrid")
STORE_FILE = "store.sqlite"
LOCK_FILE = "LOCK"
EXACT_FILTER_LIMIT = 50_000  # a filter matching fewer chunks than this is searched exactly in numpy
DEFAULT_BATCH_CHUNKS = 256  # an ingest commits at least this many chunks at a time (whole files)
BATCH_SHARE = 0.05  # ... and at least this share of the index, so re-writing the FAISS file stays a small cost

ProgressCallback = Callable[[str, int, int], None]  # (stage, advance, total)
ChunkRecord = tuple[str, int, str, str, str, dict[str, Any]]  # chunk_id, position, heading, text, hash, meta
# the new document row, its chunks, their embed texts, the status, and the rows of the same file it replaces
_Pending = tuple[DocumentRow, list[ChunkRecord], list[str], Literal["added", "updated"], list[DocumentRow]]
_crash_counts: dict[str, int] = {}


def _crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: SOTRAG_CRASH_AT=<name>[:N] kills the process right here
    (at the N-th time this point is reached; the first by default)."""
    want = os.environ.get("SOTRAG_CRASH_AT", "")
    point, _, nth = want.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class SearchConfig:
    """Search defaults, tuned on benchmarks/data/fastapi_dev.jsonl (see docs/retrieval.md)."""

    mode: SearchMode = "hybrid"
    dense_weight: float = 1.0
    lexical_weight: float = 0.5  # BM25 helps with exact terms but is the weaker ranker here
    rrf_k: int = 30
    fetch_k: int = 50  # candidates per retriever before fusion / MMR
    mmr_lambda: float = 0.5


VectorBackend = Literal["faiss", "torch"]
VECTOR_BACKENDS: tuple[str, ...] = ("faiss", "torch")


@dataclass(frozen=True)
class VectorSearch:
    """Where dense search runs. ``faiss`` (the default): the FAISS index, on the CPU. ``torch``: a copy of the
    embeddings on ``device`` (``cuda``; ``cpu`` runs the same bookkeeping with PyTorch), searched exactly with
    the fused top-k kernel and kept in step with the store (:mod:`sotrag.retrieval.gpu_index`). FAISS files
    are written either way: they stay the on-disk index that other processes and restarts read."""

    backend: VectorBackend = "faiss"
    device: str = "cuda"
    storage: Literal["fp16", "int8"] = "fp16"

    def __post_init__(self) -> None:
        if self.backend not in VECTOR_BACKENDS:
            raise ValueError(f"unknown vector backend {self.backend!r} (use faiss or torch)")
        if self.storage not in ("fp16", "int8"):
            raise ValueError(f"unknown vector storage {self.storage!r} (use fp16 or int8)")


@dataclass
class FileResult:
    source: str
    status: Literal["added", "updated", "unchanged", "skipped", "failed", "removed"]
    reason: str = ""
    chunks: int = 0


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


def _same_model(a: str, b: str) -> bool:
    return a == b or resolve_embedding_model(a) == resolve_embedding_model(b)


class DocumentIndex:
    """A folder holding one document index. Use :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        embedding_model: str,
        precision: str,
        search_config: SearchConfig,
        chunking: ChunkingConfig,
        max_file_bytes: int,
        vector_search: VectorSearch | None = None,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
    ) -> None:
        self.directory = directory
        self._store = store
        meta = store.meta()
        self.embedding_model = embedding_model
        self.dim = int(meta["dim"])
        self.index_type = meta.get("index_type", "auto")
        self.auto_threshold = int(meta.get("auto_threshold", vectors.DEFAULT_AUTO_THRESHOLD))
        self.precision = precision
        self.search_config = search_config
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.batch_chunks = max(1, batch_chunks)
        self._embedder: Embedder | None = None
        self._vectors: vectors.FaissIndex | None = None
        self._vectors_gen = -1
        self._read_lock = threading.RLock()
        self.vector_search = vector_search or VectorSearch()
        self._mirror: Any = None  # gpu_index.TorchVectorIndex when vector_search.backend == "torch"
        self._mirror_gen = -1
        self._pending: dict[asyncio.AbstractEventLoop, dict[tuple[int, Any], list[tuple[str, asyncio.Future]]]] = {}
        self._flushes: set[asyncio.Task] = set()

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | Path,
        create: bool = False,
        embedding_model: str | None = None,
        index_type: str | None = None,
        precision: str = "auto",
        search_config: SearchConfig | None = None,
        chunking: ChunkingConfig | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        auto_threshold: int | None = None,
        vector_search: VectorSearch | None = None,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
    ) -> DocumentIndex:
        """Open the index in ``directory``; ``create=True`` makes a new one there if there is none.

        ``vector_search`` picks where dense search runs (default: FAISS on the CPU; see :class:`VectorSearch`).

        ``embedding_model`` defaults to the model the index was built with (all-MiniLM-L6-v2 for a new
        one); naming a different model for an existing index raises :class:`EmbeddingModelMismatchError`.
        ``batch_chunks``: an ingest commits at least this many chunks at a time (whole files).
        """
        d = Path(directory).expanduser()
        with _storage_errors(d):
            return cls._open(
                d,
                create,
                embedding_model,
                index_type,
                precision,
                search_config,
                chunking,
                max_file_bytes,
                auto_threshold,
                batch_chunks,
                vector_search,
            )

    @classmethod
    def _open(
        cls,
        d: Path,
        create: bool,
        embedding_model: str | None,
        index_type: str | None,
        precision: str,
        search_config: SearchConfig | None,
        chunking: ChunkingConfig | None,
        max_file_bytes: int,
        auto_threshold: int | None,
        batch_chunks: int,
        vector_search: VectorSearch | None,
    ) -> DocumentIndex:
        db = d / STORE_FILE
        if not db.exists():
            if not create:
                raise IndexNotFoundError(f"no index at {d} (create one with: sotrag ingest PATH --index {d})")
            if d.exists() and not d.is_dir():
                raise IndexNotFoundError(f"{d} exists and is not a folder")
            if index_type is not None:
                vectors.resolve_kind(index_type, 0)
            d.mkdir(parents=True, exist_ok=True)
            model = embedding_model or DEFAULT_EMBEDDING_MODEL
            with _writer_lock(d):
                if not db.exists():
                    dim = Embedder(model, precision).dim
                    tmp = d / f".{STORE_FILE}.new-{os.getpid()}"
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    s = Store(tmp)
                    s.create_schema(
                        {
                            "embedding_model": model,
                            "dim": str(dim),
                            "index_type": index_type or "auto",
                            "auto_threshold": str(auto_threshold or vectors.DEFAULT_AUTO_THRESHOLD),
                            "created_at": str(time.time()),
                        }
                    )
                    s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    s.conn.execute("PRAGMA journal_mode = DELETE")
                    s.close()
                    os.replace(tmp, db)
                    vectors.fsync_dir(d)
        try:
            try:
                store = Store(db)
                meta = store.meta()
            except sqlite3.OperationalError:
                if os.access(d, os.W_OK) and not _read_only_mount(d):
                    raise
                try:  # a folder this process cannot write: searchable, and writes fail clearly
                    store = Store(db, readonly=True)
                    meta = store.meta()
                except sqlite3.OperationalError:  # no WAL index file to share, and none can be made
                    store = Store(db, immutable=True)
                    meta = store.meta()
        except sqlite3.DatabaseError as exc:
            raise storage_error(exc, d) from exc
        except Exception as exc:
            raise IndexCorruptError(f"cannot read the index store {db}: {exc}") from exc
        if "embedding_model" not in meta or "dim" not in meta:
            raise IndexCorruptError(f"{db} is not a sotrag index (no model recorded)")
        stored_model = meta["embedding_model"]
        if embedding_model is not None and not _same_model(embedding_model, stored_model):
            raise EmbeddingModelMismatchError(
                f"index at {d} was built with embedding model {stored_model!r} (dim {meta['dim']}), "
                f"not {embedding_model!r}; use that model or a new index folder"
            )
        index = cls(
            d,
            store,
            stored_model,
            precision,
            search_config or SearchConfig(),
            chunking or ChunkingConfig(),
            max_file_bytes,
            vector_search,
            batch_chunks,
        )
        if index.vector_search.backend == "torch":
            index._current_mirror()  # take the device memory now, before vLLM sizes itself
        if index_type is not None and index_type != index.index_type:
            vectors.resolve_kind(index_type, 0)
            with _writer_lock(d), store.transaction() as conn:
                store.set_meta(conn, "index_type", index_type)
            index.index_type = index_type
            index._vectors_gen = -1  # rebuilt with the new type at the next write
        return index

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> DocumentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            emb = Embedder(self.embedding_model, self.precision)
            if emb.dim != self.dim:
                raise EmbeddingModelMismatchError(
                    f"model {self.embedding_model!r} gives {emb.dim}-dim embeddings but the index holds {self.dim}"
                )
            self._embedder = emb
        return self._embedder

    # -- the vector index ---------------------------------------------------------------------------------

    def _vector_file(self, gen: int) -> Path:
        return self.directory / f"vectors-{gen}.faiss"

    def _load_vectors(self, store: Store) -> tuple[vectors.FaissIndex, int]:
        """The FAISS index of the store's current generation: from its file, else rebuilt from the store."""
        gen = store.generation()
        n = store.count_chunks()
        path = self._vector_file(gen)
        if path.exists():
            try:
                index = vectors.read(path)
                if index.ntotal == n and index.d == self.dim:
                    return index, gen
            except RuntimeError:
                pass  # unreadable: rebuild below
        ids, vecs = store.all_embeddings()
        kind = vectors.resolve_kind(self.index_type, len(ids), self.auto_threshold)
        return vectors.build(kind, self.dim, ids, vecs if len(ids) else np.zeros((0, self.dim), np.float32)), gen

    def _current_vectors(self) -> vectors.FaissIndex:
        with self._read_lock:
            if self._vectors is None or self._vectors_gen != self._store.generation():
                self._vectors, self._vectors_gen = self._load_vectors(self._store)
            return self._vectors

    def _current_mirror(self) -> Any:
        """The device copy of the store's embeddings at its current generation (rebuilt when stale)."""
        with self._read_lock:
            gen = self._store.generation()
            if self._mirror is None or self._mirror_gen != gen or self._mirror.ntotal != self._store.count_chunks():
                from sotrag.retrieval.gpu_index import TorchVectorIndex

                vs = self.vector_search
                mirror = TorchVectorIndex(self.dim, vs.device, vs.storage)
                ids, vecs = self._store.all_embeddings()
                mirror.add_with_ids(vecs, ids)
                self._mirror, self._mirror_gen = mirror, gen
            return self._mirror

    def device_reserved_bytes(self) -> int:
        """GPU memory to keep for the torch backend's device copy (0 for FAISS): see gpu_index.reserved_bytes."""
        if self.vector_search.backend != "torch":
            return 0
        return int(self._current_mirror().reserved_bytes())

    def _sync_mirror(self, store: Store, removed: Sequence[int], added: Sequence[int], new_vecs: np.ndarray) -> None:
        """After a committed write: apply the same removals and additions to the device copy, if it was in step
        with the generation before the write (otherwise it is rebuilt at the next search)."""
        with self._read_lock:
            if self._mirror is None:
                return
            gen = store.generation()
            if self._mirror_gen != gen - 1:
                self._mirror_gen = -1
                return
            self._mirror.remove_ids(np.asarray(removed, dtype=np.int64))
            self._mirror.add_with_ids(new_vecs, np.asarray(added, dtype=np.int64))
            self._mirror_gen = gen if self._mirror.ntotal == store.count_chunks() else -1

    def _persist_vectors(self, index: vectors.FaissIndex, gen: int, share: bool = True) -> None:
        """Called with the writer lock held: write this generation's file, drop older ones and stray temps.

        ``share=False`` (a batch of an ingest that goes on): the writer keeps updating ``index`` in place, so
        this object's readers reload the file instead of searching an index that is being changed."""
        vectors.write_atomic(index, self._vector_file(gen), before_rename=lambda: _crash_point("faiss_written"))
        current = self._vector_file(gen).name
        for old in [*self.directory.glob("vectors-*.faiss"), *self.directory.glob(".vectors-*.tmp-*")]:
            if old.name != current:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        with self._read_lock:
            if share:
                self._vectors, self._vectors_gen = index, gen
            elif self._vectors is index:
                self._vectors, self._vectors_gen = None, -1

    def _apply_vector_changes(
        self,
        store: Store,
        base: vectors.FaissIndex,
        removed: Sequence[int],
        added: Sequence[int],
        new_vecs: np.ndarray,
    ) -> vectors.FaissIndex:
        self._sync_mirror(store, removed, added, new_vecs)
        total = store.count_chunks()
        want = vectors.resolve_kind(self.index_type, total, self.auto_threshold)
        if vectors.supports_incremental(base) and want == "flat":
            if len(removed):
                base.remove_ids(np.asarray(removed, dtype=np.int64))
            if len(added):
                base.add_with_ids(np.ascontiguousarray(new_vecs, np.float32), np.asarray(added, dtype=np.int64))
            if base.ntotal == total:
                return base
        ids, vecs = store.all_embeddings()
        return vectors.build(want, self.dim, ids, vecs if len(ids) else np.zeros((0, self.dim), np.float32))

    # -- writing ------------------------------------------------------------------------------------------

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
        with _storage_errors(self.directory), _writer_lock(self.directory):
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
        with _storage_errors(self.directory), _writer_lock(self.directory):
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
        base, _ = self._load_vectors(store)
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
            with self._read_lock:
                self._vectors, self._vectors_gen = base, store.generation()
        elif base.ntotal != store.count_chunks() or not self._vector_file(store.generation()).exists():
            self._persist_vectors(base, store.generation())

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
            vecs = self.embedder.embed(
                list(todo.values()), (lambda n: progress("embed", n, len(todo))) if progress else None
            )
            summary.embed_seconds = round(summary.embed_seconds + time.perf_counter() - t_embed, 3)
            cache.update(zip(todo.keys(), vecs, strict=True))
        summary.chunks_embedded += len(todo)
        _crash_point("after_embed")

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
                _crash_point("mid_write")
            for d in to_prune:
                removed.extend(store.delete_document(conn, d.doc_id))
                results.append(FileResult(d.source, "removed", "no longer in the ingested folder", d.n_chunks))
            gen = store.generation() + 1
            store.set_meta(conn, "generation", str(gen))
            _crash_point("before_commit")
        _crash_point("after_commit")
        summary.files.extend(results)
        summary.chunks_written += sum(len(chunks) for _, chunks, _, _, _ in batch)
        new_vecs = np.vstack(added_vecs) if added_vecs else np.zeros((0, self.dim), np.float32)
        index = self._apply_vector_changes(store, base, removed, added, new_vecs)
        self._persist_vectors(index, gen, share=False)
        _crash_point("batch_committed")
        return index

    def _prepare_file(self, store: Store, f: FoundFile, seen: dict[str, str], taken: set[str]) -> FileResult | _Pending:
        source = f.source
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
        with _storage_errors(self.directory), _writer_lock(self.directory):
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
                base, _ = self._load_vectors(store)
                removed: list[int] = []
                with store.transaction() as conn:
                    for d in victims:
                        removed.extend(store.delete_document(conn, d.doc_id))
                    gen = store.generation() + 1
                    store.set_meta(conn, "generation", str(gen))
                index = self._apply_vector_changes(store, base, removed, [], np.zeros((0, self.dim), np.float32))
                self._persist_vectors(index, gen)
            finally:
                store.close()
        return [DocumentInfo.from_row(d) for d in victims]

    # -- reading ------------------------------------------------------------------------------------------

    def list_documents(self) -> list[DocumentInfo]:
        with self._read_lock, _storage_errors(self.directory):
            return [DocumentInfo.from_row(r) for r in self._store.documents()]

    def stats(self) -> dict[str, Any]:
        with self._read_lock, _storage_errors(self.directory):
            index = self._current_vectors()
            return {
                "directory": str(self.directory),
                "documents": len(self._store.documents()),
                "chunks": self._store.count_chunks(),
                "embedding_model": self.embedding_model,
                "dim": self.dim,
                "index_type": self.index_type,
                "faiss_index": vectors.kind_of(index),
                "generation": self._vectors_gen,
                "vector_backend": self.vector_search.backend,
                **(
                    {"vector_device": self.vector_search.device, "vector_storage": self.vector_search.storage,
                     "vector_device_bytes": self._current_mirror().nbytes()}
                    if self.vector_search.backend == "torch"
                    else {}
                ),
            }

    def search(
        self,
        query: str,
        k: int = 5,
        filters: dict[str, str] | None = None,
        mode: str | None = None,
        use_mmr: bool = False,
    ) -> list[Passage]:
        """The ``k`` best chunks for ``query``. ``mode``: dense, lexical or hybrid (RRF; the default).

        Filters (``source`` glob, ``heading`` glob, ``doc_id``, ``kind``) restrict the search itself, so a
        filtered search returns matching chunks whenever any exist. Scores: cosine (dense), BM25 (lexical),
        RRF (hybrid). ``use_mmr`` re-ranks the fused candidates for diversity.
        """
        return self.search_many([query], k, filters, mode, use_mmr)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 5,
        filters: dict[str, str] | None = None,
        mode: str | None = None,
        use_mmr: bool = False,
    ) -> list[list[Passage]]:
        """:meth:`search` for several queries at once, as per-point retrieval needs: one embedding call and
        one vector search (one kernel launch with ``vector_search.backend="torch"``) for all of them."""
        queries = list(queries)
        for query in queries:
            _check_query(query)
        if k < 1:
            raise RetrievalError("k must be at least 1")
        mode = mode or self.search_config.mode
        if mode not in SEARCH_MODES:
            raise RetrievalError(f"unknown search mode {mode!r} (use dense, lexical or hybrid)")
        if not queries:
            return []
        cfg = self.search_config
        fetch = max(cfg.fetch_k, k)
        with self._read_lock, _storage_errors(self.directory):
            if self._store.count_chunks() == 0:
                raise EmptyIndexError(f"the index at {self.directory} is empty; ingest documents first")
            try:
                allowed = self._store.filter_ids(filters) if filters else None
            except ValueError as exc:
                raise RetrievalError(str(exc)) from exc
            if allowed is not None and not allowed:
                return [[] for _ in queries]
            qvecs = self.embedder.embed_queries(queries) if mode != "lexical" or use_mmr else None
            dense_all: list[list[tuple[int, float]]] = [[] for _ in queries]
            if mode in ("dense", "hybrid"):
                assert qvecs is not None
                dense_all = self._dense_many(qvecs, fetch, allowed)
            found: list[tuple[list[tuple[int, float]], dict[int, Any]]] = []
            for j, query in enumerate(queries):
                dense = dense_all[j]
                lexical = self._store.lexical_search(query, fetch, filters) if mode in ("lexical", "hybrid") else []
                if mode == "dense":
                    ranked = dense
                elif mode == "lexical":
                    ranked = lexical
                else:
                    ranked = reciprocal_rank_fusion(
                        [[i for i, _ in dense], [i for i, _ in lexical]],
                        [cfg.dense_weight, cfg.lexical_weight],
                        cfg.rrf_k,
                    )
                if use_mmr and ranked:
                    assert qvecs is not None
                    cand = [i for i, _ in ranked[:fetch]]
                    embs = self._store.embeddings_for(cand)
                    matrix = np.vstack([embs[i] for i in cand])
                    picked = mmr(qvecs[j], matrix, k, cfg.mmr_lambda)
                    ranked = [ranked[p] for p in picked]
                ranked = ranked[:k]
                found.append((ranked, self._store.chunks([i for i, _ in ranked])))
        return [self._passages(ranked, rows, mode) for ranked, rows in found]

    @staticmethod
    def _passages(ranked: list[tuple[int, float]], rows: dict[int, Any], mode: str) -> list[Passage]:
        out = []
        for vid, score in ranked:
            r = rows.get(vid)
            if r is None:
                continue
            meta = {"doc_id": r.doc_id, "position": r.position, "title": r.title, "mode": mode, **r.metadata}
            out.append(Passage(r.text, r.source, r.heading, round(score, 6), r.chunk_id, meta))
        return out

    def _dense_many(
        self, qvecs: np.ndarray, fetch: int, allowed: list[int] | None
    ) -> list[list[tuple[int, float]]]:
        sel = np.asarray(allowed, dtype=np.int64) if allowed is not None else None
        if self.vector_search.backend == "torch":
            return vectors.search_many(self._current_mirror(), qvecs, fetch, sel)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            embs = self._store.embeddings_for(allowed)
            ids = np.fromiter(embs.keys(), dtype=np.int64, count=len(embs))
            scores = np.vstack(list(embs.values())) @ qvecs.T  # [n_allowed, nq]
            out = []
            for j in range(qvecs.shape[0]):
                top = np.argsort(-scores[:, j])[:fetch]
                out.append([(int(ids[i]), float(scores[i, j])) for i in top])
            return out
        return vectors.search_many(self._current_vectors(), qvecs, fetch, sel)

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        """The pipeline's Retriever protocol: the blocking search runs in a worker thread.

        Calls made together on one event loop (the per-point retrievals of an answer all start at once) are
        gathered into one :meth:`search_many`: one embedding call and one vector search for all points.
        An empty index gives no passages (the answer is then simply not grounded) instead of an error.
        """
        _check_query(query)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Passage]] = loop.create_future()
        key = (k, tuple(sorted(filters.items())) if filters else None)
        waiting = self._pending.setdefault(loop, {})
        if key not in waiting:
            waiting[key] = []
            loop.call_soon(self._flush, loop, key, filters)  # after the tasks already scheduled have asked
        waiting[key].append((query, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop, key: tuple[int, Any], filters: dict[str, str] | None) -> None:
        waiting = self._pending.get(loop, {})
        batch = waiting.pop(key, [])
        if not waiting:
            self._pending.pop(loop, None)
        task = loop.create_task(self._run_batch(batch, key[0], filters))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _run_batch(self, batch: list[tuple[str, asyncio.Future]], k: int, filters: dict[str, str] | None) -> None:
        try:
            results = await self.aretrieve_many([q for q, _ in batch], k, filters)
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), passages in zip(batch, results, strict=True):
            if not fut.done():  # a cancelled answer's point no longer waits
                fut.set_result(passages)

    async def aretrieve_many(
        self, queries: Sequence[str], k: int, filters: dict[str, str] | None = None
    ) -> list[list[Passage]]:
        """:meth:`search_many` in a worker thread; an empty index gives no passages for any query."""
        try:
            return await asyncio.to_thread(self.search_many, queries, k, filters)
        except EmptyIndexError:
            return [[] for _ in queries]

    def as_langchain_retriever(self, k: int = 5, mode: str | None = None, filters: dict[str, str] | None = None) -> Any:
        from sotrag.retrieval.langchain_adapter import SotragRetriever

        return SotragRetriever(index=self, k=k, mode=mode, filters=filters)


def _check_query(query: object) -> None:
    if not isinstance(query, str) or not query.strip():
        raise RetrievalError("the query is empty")


@contextlib.contextmanager
def _writer_lock(directory: Path) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``LOCK``: a second writer fails at once with a clear message."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder else ""
            raise IndexLockedError(f"index is locked: another process{who} is writing to {directory}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _nearly_full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _read_only_mount(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def storage_error(exc: BaseException, directory: Path) -> RetrievalError:
    """The one-line, typed error for a failure of the index's own files (SQLite, FAISS, the folder)."""
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).lower()
        if "full" in text:
            return _write_error(directory, "no space left on device")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return _write_error(directory, "the folder or its files are not writable")
        if "malformed" in text or "not a database" in text or "no such table" in text or "corrupt" in text:
            return IndexCorruptError(
                f"the index store in {directory} is damaged ({exc}); remove the folder and ingest again"
            )
        if "disk i/o error" in text:  # SQLite could not grow its WAL or shared-memory file: often a full disk
            return _write_error(directory, "no space left on device" if _nearly_full(directory) else "disk I/O error")
        if "locked" in text or "busy" in text:
            return IndexLockedError(f"the index store in {directory} is busy ({exc}); try again")
        return IndexCorruptError(f"cannot use the index store in {directory}: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in _NO_SPACE:
            return _write_error(directory, "no space left on device")
        if exc.errno in _NOT_WRITABLE:
            return _write_error(directory, "the folder or its files are not writable")
        where = f" ({Path(exc.filename).name})" if exc.filename else ""
        return _write_error(directory, f"{exc.strerror or exc}{where}")
    return RetrievalError(f"index {directory}: {type(exc).__name__}: {exc}")


def _write_error(directory: Path, reason: str) -> IndexWriteError:
    return IndexWriteError(
        f"cannot write the index in {directory}: {reason}. The index is intact (it holds everything committed "
        "before this); fix that and run the command again",
        reason,
    )


@contextlib.contextmanager
def _storage_errors(directory: Path) -> Iterator[None]:
    """Translate failures of the index's own files into typed one-line errors (:func:`storage_error`).

    Input files are read (and their errors reported per file) inside, but never raise out of it."""
    try:
        yield
    except RetrievalError:
        raise
    except (sqlite3.DatabaseError, OSError) as exc:
        raise storage_error(exc, directory) from exc
