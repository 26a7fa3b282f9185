"""The server app over the shared scripted engine, with an HTTP client on it: for tests of what the REST and OpenAI
routes answer where the engine is not the point (no vLLM, no port)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from tests.fakes import ScriptedEngine, default_skeleton, sampling


@contextlib.asynccontextmanager
async def scripted_client() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedEngine]]:
    """A started app (3-point skeletons, 4-token answers, no UI) and a client on it; stopped on exit."""
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4))
    app = create_app(s, pipeline=SoTPipeline(engine, s), ui=False)
    await app.state.service.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as c:
            yield c, engine
    finally:
        await app.state.service.stop()
