"""A non-streamed answer that stops (and aborts its engine requests) when its HTTP client goes away."""

from __future__ import annotations

import asyncio

from fastapi import Request

from sotrag.app.events import AnswerResult
from sotrag.app.serving.service import AnswerRun


async def run_unless_disconnected(run: AnswerRun, request: Request, poll_s: float = 0.25) -> AnswerResult:
    """Run a non-streamed answer, cancelling it (and its engine requests) if the client leaves meanwhile."""
    task = asyncio.ensure_future(run.run())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientDisconnected("the client left before the answer was done")
    finally:
        if not task.done():
            task.cancel()  # the answer's own cleanup aborts its engine requests


class ClientDisconnected(RuntimeError):
    """Nobody is left to read the response; answered with 499 for the logs and metrics."""
