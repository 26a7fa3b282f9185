"""An index folder's vector indexes: the FAISS index of the store's current generation (read from its file, or
rebuilt from the store's embeddings when the file is missing or stale), and with ``vector_search.backend="torch"``
a device copy of the embeddings kept in step with the store. See ``sotrag.retrieval.index`` for why the FAISS file
follows the store's commit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sotrag.retrieval import vectors
from sotrag.retrieval.index_config import VectorSearch
from sotrag.retrieval.index_files import crash_point
from sotrag.retrieval.store import Store


class IndexVectors:
    """The vector side of one index folder, shared by its writer and its search (``read_lock`` guards it).

    ``index_type``/``auto_threshold`` choose the FAISS index kind; ``mirror`` is the torch backend's device copy
    (``gpu_index.TorchVectorIndex``), None until first used."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        dim: int,
        index_type: str,
        auto_threshold: int,
        vector_search: VectorSearch,
        read_lock: threading.RLock,
    ) -> None:
        self.directory = directory
        self._store = store
        self.dim = dim
        self.index_type = index_type
        self.auto_threshold = auto_threshold
        self.vector_search = vector_search
        self.read_lock = read_lock
        self._faiss: vectors.FaissIndex | None = None
        self.generation = -1  # the store generation ``current()`` holds; -1: none (reload at next use)
        self.mirror: Any = None
        self._mirror_gen = -1

    def adopt(self, index: vectors.FaissIndex, gen: int) -> None:
        """Hold ``index`` (a writer's, after its last commit) as generation ``gen``."""
        with self.read_lock:
            self._faiss, self.generation = index, gen

    def file(self, gen: int) -> Path:
        return self.directory / f"vectors-{gen}.faiss"

    def load(self, store: Store) -> tuple[vectors.FaissIndex, int]:
        """The FAISS index of the store's current generation: from its file, else rebuilt from the store."""
        gen = store.generation()
        n = store.count_chunks()
        path = self.file(gen)
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

    def current(self) -> vectors.FaissIndex:
        with self.read_lock:
            if self._faiss is None or self.generation != self._store.generation():
                self._faiss, self.generation = self.load(self._store)
            return self._faiss

    def current_mirror(self) -> Any:
        """The device copy of the store's embeddings at its current generation (rebuilt when stale)."""
        with self.read_lock:
            gen = self._store.generation()
            if self.mirror is None or self._mirror_gen != gen or self.mirror.ntotal != self._store.count_chunks():
                from sotrag.retrieval.gpu_index import TorchVectorIndex

                vs = self.vector_search
                mirror = TorchVectorIndex(self.dim, vs.device, vs.storage)
                ids, vecs = self._store.all_embeddings()
                mirror.add_with_ids(vecs, ids)
                self.mirror, self._mirror_gen = mirror, gen
            return self.mirror

    def device_reserved_bytes(self) -> int:
        """GPU memory to keep for the torch backend's device copy (0 for FAISS): see gpu_index.reserved_bytes."""
        if self.vector_search.backend != "torch":
            return 0
        return int(self.current_mirror().reserved_bytes())

    def sync_mirror(self, store: Store, removed: Sequence[int], added: Sequence[int], new_vecs: np.ndarray) -> None:
        """After a committed write: apply the same removals and additions to the device copy, if it was in step
        with the generation before the write (otherwise it is rebuilt at the next search)."""
        with self.read_lock:
            if self.mirror is None:
                return
            gen = store.generation()
            if self._mirror_gen != gen - 1:
                self._mirror_gen = -1
                return
            self.mirror.remove_ids(np.asarray(removed, dtype=np.int64))
            self.mirror.add_with_ids(new_vecs, np.asarray(added, dtype=np.int64))
            self._mirror_gen = gen if self.mirror.ntotal == store.count_chunks() else -1

    def persist(self, index: vectors.FaissIndex, gen: int, share: bool = True) -> None:
        """Called with the writer lock held: write this generation's file, drop older ones and stray temps.

        ``share=False`` (a batch of an ingest that goes on): the writer keeps updating ``index`` in place, so
        this object's readers reload the file instead of searching an index that is being changed."""
        vectors.write_atomic(index, self.file(gen), before_rename=lambda: crash_point("faiss_written"))
        current = self.file(gen).name
        for old in [*self.directory.glob("vectors-*.faiss"), *self.directory.glob(".vectors-*.tmp-*")]:
            if old.name != current:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        with self.read_lock:
            if share:
                self._faiss, self.generation = index, gen
            elif self._faiss is index:
                self._faiss, self.generation = None, -1

    def apply_changes(
        self,
        store: Store,
        base: vectors.FaissIndex,
        removed: Sequence[int],
        added: Sequence[int],
        new_vecs: np.ndarray,
    ) -> vectors.FaissIndex:
        self.sync_mirror(store, removed, added, new_vecs)
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

