"""What a ``DocumentIndex`` is opened with: search defaults, where dense search runs, and ``IndexOptions``.

``IndexOptions`` gathers what ``DocumentIndex.open`` takes besides the folder, so the pieces of the index (the
writer, the search, the vector state) are built from one value instead of a long list of arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sotrag.retrieval.chunking import ChunkingConfig

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024  # a file larger than this is skipped when documents are loaded

SearchMode = Literal["dense", "lexical", "hybrid"]
SEARCH_MODES: tuple[str, ...] = ("dense", "lexical", "hybrid")
DEFAULT_BATCH_CHUNKS = 256  # an ingest commits at least this many chunks at a time (whole files)


@dataclass(frozen=True)
class SearchConfig:
    """Search defaults, tuned on benchmarks/data/fastapi_dev.jsonl (see docs/retrieval.md)."""

    mode: SearchMode = "hybrid"
    dense_weight: float = 1.0
    lexical_weight: float = 0.5  # BM25 helps with exact terms but is the weaker ranker here
    rrf_k: int = 30
    page_weight: float = 0.0  # hybrid: + this x the best other candidate of the chunk's page (off: docs/retrieval.md)
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


@dataclass(frozen=True)
class IndexOptions:
    """How to open an index (``DocumentIndex.open``'s keywords after ``directory`` and ``create``).

    ``embedding_model``: None = the model the index was built with (all-MiniLM-L6-v2 for a new one).
    ``index_type``/``auto_threshold``: the FAISS index kind (``vectors.resolve_kind``) and where ``auto`` switches;
    both are recorded in a new index, and a given ``index_type`` replaces an existing index's.
    ``vector_search``: where dense search runs. ``batch_chunks``: an ingest commits at least this many chunks at a
    time (whole files)."""

    embedding_model: str | None = None
    index_type: str | None = None
    precision: str = "auto"
    search_config: SearchConfig = field(default_factory=SearchConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    auto_threshold: int | None = None  # None: vectors.DEFAULT_AUTO_THRESHOLD
    vector_search: VectorSearch = field(default_factory=VectorSearch)
    batch_chunks: int = DEFAULT_BATCH_CHUNKS
