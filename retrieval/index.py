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
import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sotrag.retrieval import vectors
from sotrag.retrieval.chunking import ChunkingConfig
from sotrag.retrieval.embedder import DEFAULT_EMBEDDING_MODEL, Embedder, resolve_embedding_model
from sotrag.retrieval.errors import EmbeddingModelMismatchError, EmptyIndexError, IndexCorruptError, IndexNotFoundError
from sotrag.retrieval.index_config import (
    DEFAULT_BATCH_CHUNKS,
    SEARCH_MODES,
    VECTOR_BACKENDS,
    IndexOptions,
    SearchConfig,
    SearchMode,
    VectorBackend,
    VectorSearch,
)
from sotrag.retrieval.index_files import STORE_FILE, read_only_mount, storage_error, storage_errors, writer_lock
from sotrag.retrieval.index_vectors import IndexVectors
from sotrag.retrieval.ingest import DocumentInfo, FileResult, IndexWriter, IngestSummary, ProgressCallback
from sotrag.retrieval.loaders import FoundFile
from sotrag.retrieval.search import IndexSearch, RetrieveBatcher
from sotrag.retrieval.store import Store
from sotrag.retrieval.types import Passage

__all__ = [  # the names callers import from here (the pieces live in the modules above)
    "DEFAULT_BATCH_CHUNKS", "SEARCH_MODES", "VECTOR_BACKENDS", "DocumentIndex", "DocumentInfo", "FileResult",
    "IndexOptions", "IngestSummary", "ProgressCallback", "SearchConfig", "SearchMode", "VectorBackend", "VectorSearch",
    "storage_error",
]


def _same_model(a: str, b: str) -> bool:
    return a == b or resolve_embedding_model(a) == resolve_embedding_model(b)


class DocumentIndex:
    """A folder holding one document index. Use :meth:`open`.

    Its jobs live in three parts over one store: ``IndexWriter`` (ingest, remove), ``IndexSearch`` (search) and
    ``IndexVectors`` (the FAISS index of the store's generation, and the torch backend's device copy)."""

    def __init__(self, directory: Path, store: Store, embedding_model: str, options: IndexOptions) -> None:
        self.directory = directory
        self._store = store
        meta = store.meta()
        self.embedding_model = embedding_model
        self.dim = int(meta["dim"])
        self.precision = options.precision
        self.options = options
        self._embedder: Embedder | None = None
        self._vectors = IndexVectors(
            directory, store, self.dim, meta.get("index_type", "auto"),
            int(meta.get("auto_threshold", vectors.DEFAULT_AUTO_THRESHOLD)), options.vector_search, threading.RLock(),
        )
        self._writer = IndexWriter(directory, self._vectors, lambda: self.embedder, options)
        self._search = IndexSearch(directory, store, self._vectors, lambda: self.embedder, options.search_config)
        self._batcher = RetrieveBatcher(self.aretrieve_many)

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | Path,
        create: bool = False,
        embedding_model: str | None = None,
        index_type: str | None = None,
        precision: str | None = None,
        search_config: SearchConfig | None = None,
        chunking: ChunkingConfig | None = None,
        max_file_bytes: int | None = None,
        auto_threshold: int | None = None,
        vector_search: VectorSearch | None = None,
        batch_chunks: int | None = None,
        *,
        options: IndexOptions | None = None,
    ) -> DocumentIndex:
        """Open the index in ``directory``; ``create=True`` makes a new one there if there is none.

        ``options`` (:class:`IndexOptions`) says how; each other keyword given (not None) replaces its field, so
        ``open(d, precision="bf16")`` and ``open(d, options=IndexOptions(precision="bf16"))`` are the same.
        ``vector_search`` picks where dense search runs (default: FAISS on the CPU; see :class:`VectorSearch`).
        ``embedding_model`` defaults to the model the index was built with (all-MiniLM-L6-v2 for a new
        one); naming a different model for an existing index raises :class:`EmbeddingModelMismatchError`.
        ``batch_chunks``: an ingest commits at least this many chunks at a time (whole files).
        """
        given: dict[str, Any] = {
            "embedding_model": embedding_model, "index_type": index_type, "precision": precision,
            "search_config": search_config, "chunking": chunking, "max_file_bytes": max_file_bytes,
            "auto_threshold": auto_threshold, "vector_search": vector_search, "batch_chunks": batch_chunks,
        }
        opts = dataclasses.replace(options or IndexOptions(), **{k: v for k, v in given.items() if v is not None})
        d = Path(directory).expanduser()
        with storage_errors(d):
            return cls._open(d, create, opts)

    @classmethod
    def _open(cls, d: Path, create: bool, options: IndexOptions) -> DocumentIndex:
        db = d / STORE_FILE
        if not db.exists():
            _create(d, create, options)
        store, meta = _read_store(d, db)
        if "embedding_model" not in meta or "dim" not in meta:
            raise IndexCorruptError(f"{db} is not a sotrag index (no model recorded)")
        stored_model = meta["embedding_model"]
        embedding_model = options.embedding_model
        if embedding_model is not None and not _same_model(embedding_model, stored_model):
            raise EmbeddingModelMismatchError(
                f"index at {d} was built with embedding model {stored_model!r} (dim {meta['dim']}), "
                f"not {embedding_model!r}; use that model or a new index folder"
            )
        index = cls(d, store, stored_model, options)
        if index.vector_search.backend == "torch":
            index._vectors.current_mirror()  # take the device memory now, before vLLM sizes itself
        index_type = options.index_type
        if index_type is not None and index_type != index.index_type:
            vectors.resolve_kind(index_type, 0)
            with writer_lock(d), store.transaction() as conn:
                store.set_meta(conn, "index_type", index_type)
            index._vectors.index_type = index_type
            index._vectors.generation = -1  # rebuilt with the new type at the next write
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

    # -- what it was opened with ----------------------------------------------------------------------------

    @property
    def index_type(self) -> str:
        return self._vectors.index_type

    @property
    def auto_threshold(self) -> int:
        return self._vectors.auto_threshold

    @property
    def vector_search(self) -> VectorSearch:
        return self._vectors.vector_search

    @property
    def search_config(self) -> SearchConfig:
        return self._search.config

    @search_config.setter
    def search_config(self, config: SearchConfig) -> None:
        self._search.config = config

    @property
    def chunking(self) -> ChunkingConfig:
        return self._writer.chunking

    @property
    def max_file_bytes(self) -> int:
        return self._writer.max_file_bytes

    @property
    def batch_chunks(self) -> int:
        return self._writer.batch_chunks

    def device_reserved_bytes(self) -> int:
        """GPU memory to keep for the torch backend's device copy (0 for FAISS): see gpu_index.reserved_bytes."""
        return self._vectors.device_reserved_bytes()

    # -- writing ------------------------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str | Path],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestSummary:
        """Add new files, replace changed ones, leave unchanged ones alone (``IndexWriter.ingest`` says how)."""
        return self._writer.ingest(paths, include, exclude, prune, progress)

    def add_files(self, files: Sequence[FoundFile], progress: ProgressCallback | None = None) -> IngestSummary:
        """Ingest files described exactly (identity ``path``, ``source``, bytes from ``read_from``): uploads."""
        return self._writer.add_files(files, progress)

    def remove(self, source: str) -> list[DocumentInfo]:
        """Remove a document by source path, glob over sources, doc id or file path; returns what was removed."""
        return self._writer.remove(source)

    # -- reading ------------------------------------------------------------------------------------------

    def list_documents(self) -> list[DocumentInfo]:
        with self._vectors.read_lock, storage_errors(self.directory):
            return [DocumentInfo.from_row(r) for r in self._store.documents()]

    def stats(self) -> dict[str, Any]:
        with self._vectors.read_lock, storage_errors(self.directory):
            index = self._vectors.current()
            return {
                "directory": str(self.directory),
                "documents": len(self._store.documents()),
                "chunks": self._store.count_chunks(),
                "embedding_model": self.embedding_model,
                "dim": self.dim,
                "index_type": self.index_type,
                "faiss_index": vectors.kind_of(index),
                "generation": self._vectors.generation,
                "vector_backend": self.vector_search.backend,
                **(
                    {"vector_device": self.vector_search.device, "vector_storage": self.vector_search.storage,
                     "vector_device_bytes": self._vectors.current_mirror().nbytes()}
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
        """The ``k`` best chunks for ``query`` (``IndexSearch.search`` says how)."""
        return self._search.search_many([query], k, filters, mode, use_mmr)[0]

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
        return self._search.search_many(queries, k, filters, mode, use_mmr)

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        """The pipeline's Retriever protocol: the blocking search runs in a worker thread.

        Calls made together on one event loop (the per-point retrievals of an answer all start at once) are
        gathered into one :meth:`search_many`: one embedding call and one vector search for all points.
        An empty index gives no passages (the answer is then simply not grounded) instead of an error.
        """
        return await self._batcher.aretrieve(query, k, filters)

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



def _create(d: Path, create: bool, options: IndexOptions) -> None:
    """Make a new, empty index in ``d`` (its store written aside, then renamed in), unless another process just did."""
    db = d / STORE_FILE
    if not create:
        raise IndexNotFoundError(f"no index at {d} (create one with: sotrag ingest PATH --index {d})")
    if d.exists() and not d.is_dir():
        raise IndexNotFoundError(f"{d} exists and is not a folder")
    if options.index_type is not None:
        vectors.resolve_kind(options.index_type, 0)
    d.mkdir(parents=True, exist_ok=True)
    model = options.embedding_model or DEFAULT_EMBEDDING_MODEL
    with writer_lock(d):
        if not db.exists():
            dim = Embedder(model, options.precision).dim
            tmp = d / f".{STORE_FILE}.new-{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            s = Store(tmp)
            s.create_schema(
                {
                    "embedding_model": model,
                    "dim": str(dim),
                    "index_type": options.index_type or "auto",
                    "auto_threshold": str(options.auto_threshold or vectors.DEFAULT_AUTO_THRESHOLD),
                    "created_at": str(time.time()),
                }
            )
            s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            s.conn.execute("PRAGMA journal_mode = DELETE")
            s.close()
            os.replace(tmp, db)
            vectors.fsync_dir(d)


def _read_store(d: Path, db: Path) -> tuple[Store, dict[str, str]]:
    """The index's store and its meta; read-only (or immutable) where this process cannot write the folder."""
    try:
        try:
            store = Store(db)
            meta = store.meta()
        except sqlite3.OperationalError:
            if os.access(d, os.W_OK) and not read_only_mount(d):
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
    return store, meta
