"""Serve an app in this test's event loop (uvicorn: Gradio's queue needs its lifespan) and call the UI's API the way
any client can: ``POST /gradio_api/call/<name>``, then read that call's event stream."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from tests.serving import free_port


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app on a free loopback port, its service started; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    await app.state.service.wait_started()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        gc.unfreeze()  # the app froze the heap once ready (a server's setting, not a test process's)


async def gradio_call(base: str, name: str, data: list[Any]) -> tuple[str, str]:
    """The event (``complete`` or ``error``) of a Gradio API call and the stream's text after that event line."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post(f"/gradio_api/call/{name}", json={"data": data})
        assert r.status_code == 200, r.text
        text = ""
        async with c.stream("GET", f"/gradio_api/call/{name}/{r.json()['event_id']}") as resp:
            async for chunk in resp.aiter_text():
                text += chunk
                if "event: complete" in text or "event: error" in text:
                    break
    event = "error" if "event: error" in text else "complete"
    return event, text.split("event: " + event, 1)[1]


def first_data(text: str) -> Any:
    """The JSON of the first ``data:`` line of an event's text."""
    return json.loads(text.split("data:", 1)[1].strip().splitlines()[0])
