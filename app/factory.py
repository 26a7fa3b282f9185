"""Build a ready pipeline from settings: the engine, the document index (when configured), the router.

The CLI, the library client and the server all start here, so they agree on what a configuration means.
"""

from __future__ import annotations

import asyncio

from sotrag.app.config import Settings
from sotrag.app.engines.base import Engine
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Retriever


async def create_engine(settings: Settings) -> Engine:
    """Remote vLLM servers when ``engine.urls`` is set, else an in-process vLLM."""
    if settings.engine.remote:
        from sotrag.app.engines.remote import RemoteEngine

        return await RemoteEngine.create(settings.engine)
    from sotrag.app.engines.vllm import VLLMEngine

    return await VLLMEngine.create(settings.engine)


def open_index(index_dir: str, settings: Settings | None = None, create: bool = False) -> Retriever:
    """Open an existing document index (``sotrag ingest`` makes one); errors are user-facing."""
    from sotrag.retrieval.index import DocumentIndex, VectorSearch

    settings = settings or Settings()
    vs, rs = settings.vector_search, settings.retrieval
    return DocumentIndex.open(
        index_dir, create=create, vector_search=VectorSearch(vs.backend, vs.device, vs.storage),
        embedding_model=rs.embedding_model, search_config=rs.search_config(),
    )


def share_gpu_with_index(settings: Settings, retriever: Retriever | None) -> Settings:
    """An index on the GPU keeps memory vLLM must not take: lower gpu_memory_utilization by its share."""
    if retriever is None or not settings.vector_search.device.startswith("cuda"):
        return settings
    from sotrag.retrieval.index import DocumentIndex

    reserved = retriever.device_reserved_bytes() if isinstance(retriever, DocumentIndex) else 0
    if not reserved:
        return settings
    from sotrag.retrieval.gpu_index import vllm_memory_utilization

    util = vllm_memory_utilization(settings.engine.gpu_memory_utilization, reserved, settings.vector_search.device)
    return settings.model_copy(update={"engine": settings.engine.model_copy(update={"gpu_memory_utilization": util})})


async def create_pipeline(
    settings: Settings, *, engine: Engine | None = None, retriever: Retriever | None = None
) -> SoTPipeline:
    """Start what ``settings`` asks for. An engine or retriever passed in is used as is (tests share one)."""
    from sotrag.app.routing.factory import router_from_config

    if retriever is None and settings.index_dir:
        retriever = await asyncio.to_thread(open_index, settings.index_dir, settings)  # fail before the engine
    settings = share_gpu_with_index(settings, retriever)
    engine = engine or await create_engine(settings)
    return SoTPipeline(engine, settings, retriever=retriever, router=router_from_config(settings.router, engine))
