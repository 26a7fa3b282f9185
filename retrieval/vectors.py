"""The FAISS side: build, update, save (atomically) and search the vector index.

Every index is an ``IndexIDMap`` whose ids are the store's ``vector_id``s, around one of:
``flat`` (exact ``IndexFlatIP``, the default), ``hnsw`` (``IndexHNSWFlat``, inner product) or ``ivf``
(``IndexIVFFlat``). ``auto`` picks flat below a size threshold and HNSW above it. Vectors are normalized,
so inner product is cosine similarity. Files are written with FAISS's own format (never pickle).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import faiss as _faiss
import numpy as np

# FAISS's bundled type stubs lack the search-parameter classes and selector keywords used here.
faiss: Any = _faiss
FaissIndex = Any

IndexKind = Literal["flat", "hnsw", "ivf", "auto"]
INDEX_KINDS = ("flat", "hnsw", "ivf", "auto")
DEFAULT_AUTO_THRESHOLD = 100_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVF_NPROBE = 16


def resolve_kind(kind: str, n_vectors: int, auto_threshold: int = DEFAULT_AUTO_THRESHOLD) -> str:
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index type {kind!r} (use one of {', '.join(INDEX_KINDS)})")
    if kind == "auto":
        return "hnsw" if n_vectors >= auto_threshold else "flat"
    return kind


def empty_index(kind: str, dim: int, n_train: int = 0) -> FaissIndex:
    inner: FaissIndex
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(max(n_train, 1))), n_train // 39 if n_train >= 39 else 1))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.nprobe = min(IVF_NPROBE, nlist)
        # keep the quantizer alive as long as the index (SWIG does not own it otherwise)
        inner.__dict__["_quantizer"] = quantizer
    else:
        raise ValueError(f"unknown index type {kind!r}")
    index = faiss.IndexIDMap(inner)
    index.__dict__["_inner"] = inner
    return index


def build(kind: str, dim: int, ids: np.ndarray, vecs: np.ndarray) -> FaissIndex:
    """A fresh index of ``kind`` (already resolved) over ``vecs`` with ``ids``."""
    index = empty_index(kind, dim, n_train=len(ids))
    if len(ids):
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if kind == "ivf":
            index.train(vecs)
        index.add_with_ids(vecs, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def kind_of(index: FaissIndex) -> str:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    return "flat"


def supports_incremental(index: FaissIndex) -> bool:
    """Flat indexes are updated in place; HNSW (no removal) and IVF (trained) are rebuilt on change."""
    return kind_of(index) == "flat"


def write_atomic(index: FaissIndex, path: Path, before_rename: Callable[[], None] | None = None) -> None:
    """Write to a temp file in the same folder, fsync it, rename over ``path``, fsync the folder.

    The index is serialized in memory (FAISS's own format) and written by Python, so a failed write, flush or
    close (disk full) raises ``OSError``; FAISS's file writer only prints a failed close."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        try:
            data = faiss.serialize_index(index)
        except RuntimeError as exc:
            raise _as_os_error(exc, tmp) from exc
        _write_file(tmp, memoryview(data))
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def _write_file(path: Path, data: memoryview) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _as_os_error(exc: RuntimeError, path: Path) -> OSError:
    """The ``OSError`` behind a FAISS I/O failure (disk full, permission denied, ...), so callers see errno."""
    message = str(exc)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EIO):
        if os.strerror(code) in message:
            return OSError(code, os.strerror(code), str(path))
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return OSError(errno.EIO, f"cannot write the vector file ({first[-200:]})", str(path))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> FaissIndex:
    index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap):
        index = faiss.downcast_index(index)
    if kind_of(index) == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
    return index


def search(
    index: FaissIndex, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """Top-``k`` (vector_id, cosine) for one normalized query, restricted to ``allowed_ids`` inside FAISS."""
    return search_many(index, query.reshape(1, -1), k, allowed_ids)[0]


def search_many(
    index: FaissIndex, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
) -> list[list[tuple[int, float]]]:
    """:func:`search` for a batch of queries ``[nq, d]`` in one FAISS call (or one GPU kernel call for a
    :class:`~sotrag.retrieval.gpu_index.TorchVectorIndex`, which has the same ``search`` signature)."""
    nq = len(queries)
    if index.ntotal == 0 or k <= 0 or nq == 0:
        return [[] for _ in range(nq)]
    q = np.ascontiguousarray(queries, dtype=np.float32).reshape(nq, -1)
    if not isinstance(index, faiss.Index):  # TorchVectorIndex: exact, filters inside its own search
        scores, ids = index.search(q, min(k, index.ntotal), allowed_ids)
    else:
        params = None
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            kind = kind_of(index)
            if kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
            elif kind == "ivf":
                params = faiss.SearchParametersIVF(sel=selector, nprobe=IVF_NPROBE)
            else:
                params = faiss.SearchParameters(sel=selector)
        scores, ids = index.search(q, min(k, index.ntotal), params=params)
    return [
        [(int(i), float(s)) for i, s in zip(ids_row, scores_row, strict=True) if i >= 0]
        for ids_row, scores_row in zip(ids, scores, strict=True)
    ]
