"""A deterministic stand-in for MiniLM, for the kill-loop test only: it makes an ingest's embedding cost
nothing, so that 20+ ingest processes can be started and killed in a bounded time. What that test checks is
the storage (SQLite, FTS, FAISS, batches), which this does not touch; every other retrieval test uses MiniLM."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np


class HashEmbedder:
    dim = 384
    model_name = "hash-embedder (tests only)"

    def _one(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._one(t)
            if progress is not None and i % 4 == 3:
                progress(4)
        return out

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.embed(queries)

    def embed_query(self, query: str) -> np.ndarray:
        return self._one(query)
