"""A LangChain ``BaseRetriever`` over a :class:`DocumentIndex`, so sotrag's index plugs into LangChain chains."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from sotrag.retrieval.types import Passage


def passage_to_document(p: Passage) -> Document:
    return Document(
        page_content=p.text,
        id=p.chunk_id or None,
        metadata={"source": p.source, "heading": p.heading, "score": p.score, "chunk_id": p.chunk_id, **p.metadata},
    )


class SotragRetriever(BaseRetriever):
    """``index.as_langchain_retriever(k=5)``; ``invoke(query)`` returns LangChain ``Document``s."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    k: int = 5
    mode: str | None = None
    filters: dict[str, str] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [passage_to_document(p) for p in self.index.search(query, self.k, self.filters, self.mode)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        import asyncio

        passages = await asyncio.to_thread(self.index.search, query, self.k, self.filters, self.mode)
        return [passage_to_document(p) for p in passages]
