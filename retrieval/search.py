"""Searching an index: dense (FAISS, or the torch backend's device copy), lexical (SQLite FTS5 BM25) or hybrid
(reciprocal rank fusion, then a bounded boost for chunks whose page has another good candidate), with filters
applied inside the search and optional MMR re-ranking; and
``RetrieveBatcher``, which gathers the retrievals an answer starts together into one search.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sotrag.retrieval import vectors
from sotrag.retrieval.embedder import Embedder
from sotrag.retrieval.errors import EmptyIndexError, RetrievalError
from sotrag.retrieval.fusion import mmr, page_boost, reciprocal_rank_fusion
from sotrag.retrieval.index_config import SEARCH_MODES, SearchConfig
from sotrag.retrieval.index_files import storage_errors
from sotrag.retrieval.index_vectors import IndexVectors
from sotrag.retrieval.store import Store
from sotrag.retrieval.types import Passage

EXACT_FILTER_LIMIT = 50_000  # a filter matching fewer chunks than this is searched exactly in numpy


class IndexSearch:
    """The reads of one index folder that rank chunks for queries (``config``: the search defaults)."""

    def __init__(
        self, directory: Path, store: Store, vector_state: IndexVectors, embedder: Callable[[], Embedder],
        config: SearchConfig,
    ) -> None:
        self.directory = directory
        self._store = store
        self._vectors = vector_state
        self._embedder = embedder
        self.config = config

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
            check_query(query)
        check_filters(filters)
        if k < 1:
            raise RetrievalError("k must be at least 1")
        mode = mode or self.config.mode
        if mode not in SEARCH_MODES:
            raise RetrievalError(f"unknown search mode {mode!r} (use dense, lexical or hybrid)")
        if not queries:
            return []
        cfg = self.config
        fetch = max(cfg.fetch_k, k)
        with self._vectors.read_lock, storage_errors(self.directory):
            if self._store.count_chunks() == 0:
                raise EmptyIndexError(f"the index at {self.directory} is empty; ingest documents first")
            try:
                allowed = self._store.filter_ids(filters) if filters else None
            except ValueError as exc:
                raise RetrievalError(str(exc)) from exc
            if allowed is not None and not allowed:
                return [[] for _ in queries]
            qvecs = self._embedder().embed_queries(queries) if mode != "lexical" or use_mmr else None
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
                    if cfg.page_weight:
                        ranked = page_boost(ranked, self._store.doc_ids([i for i, _ in ranked]), cfg.page_weight)
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
        if self._vectors.vector_search.backend == "torch":
            return vectors.search_many(self._vectors.current_mirror(), qvecs, fetch, sel)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            embs = self._store.embeddings_for(allowed)
            ids = np.fromiter(embs.keys(), dtype=np.int64, count=len(embs))
            scores = np.vstack(list(embs.values())) @ qvecs.T  # [n_allowed, nq]
            out = []
            for j in range(qvecs.shape[0]):
                top = np.argsort(-scores[:, j])[:fetch]
                out.append([(int(ids[i]), float(scores[i, j])) for i in top])
            return out
        return vectors.search_many(self._vectors.current(), qvecs, fetch, sel)


class RetrieveBatcher:
    """The pipeline's ``aretrieve`` for one index: calls made together on one event loop (the per-point retrievals
    of an answer all start at once) are gathered into one ``search_many`` call (``many``): one embedding call and
    one vector search for all points."""

    def __init__(self, many: Callable[[Sequence[str], int, dict[str, str] | None], Awaitable[list[list[Passage]]]]):
        self._many = many
        self._pending: dict[asyncio.AbstractEventLoop, dict[tuple[int, Any], list[tuple[str, asyncio.Future]]]] = {}
        self._flushes: set[asyncio.Task] = set()

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        check_query(query)
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
            results = await self._many([q for q, _ in batch], k, filters)
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), passages in zip(batch, results, strict=True):
            if not fut.done():  # a cancelled answer's point no longer waits
                fut.set_result(passages)


_SURROGATE = re.compile("[\ud800-\udfff]")  # (retrieval imports nothing of the app)


def check_query(query: object) -> None:
    if not isinstance(query, str) or not query.strip():
        raise RetrievalError("the query is empty")
    check_text(query, "the query")


def check_text(text: str, what: str) -> None:
    """A ``RetrievalError`` naming ``what`` for text no tokenizer or SQLite takes: a lone surrogate, which is how
    Python decodes a command-line byte that is not UTF-8 (``surrogateescape``), or JSON's ``"\\ud800"``."""
    m = _SURROGATE.search(text)
    if m is not None:
        raise RetrievalError(
            f"{what} is not valid UTF-8 (a byte or surrogate it cannot encode at character {m.start()})"
        )


def check_filters(filters: dict[str, str] | None) -> None:
    for key, value in (filters or {}).items():
        check_text(key, "a filter name")
        check_text(value, f"filter {key!r}" if key.isprintable() and key.isascii() else "a filter value")
