"""Build a ready pipeline from settings: the engine, the document index (when configured), the router.

The CLI, the library client and the server all start here, so they agree on what a configuration means.
"""

from __future__ import annotations

from sotrag.app.config import Settings
from sotrag.app.engine import Engine
from sotrag.app.pipeline import SoTPipeline


async def create_engine(settings: Settings) -> Engine:
    from sotrag.app.vllm_engine import VLLMEngine

    return await VLLMEngine.create(settings.engine)


async def create_pipeline(settings: Settings, *, engine: Engine | None = None) -> SoTPipeline:
    """Start what ``settings`` asks for. An engine passed in is used as is (tests share one)."""
    engine = engine or await create_engine(settings)
    return SoTPipeline(engine, settings)
