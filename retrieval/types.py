"""Plain data types shared by retrieval and the pipeline (no heavy imports here on purpose: the pipeline
and the GPU benchmark import this without LangChain or FAISS installed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as the model and the user see it."""

    text: str
    source: str  # file path relative to the ingested folder
    heading: str = ""  # heading path, "Tutorial > First steps"
    score: float = 0.0
    chunk_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.source} > {self.heading}" if self.heading else self.source


class Retriever(Protocol):
    """What the pipeline needs from a document index."""

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]: ...
