"""The shared tap on the real engine's ``AsyncLLM.add_request`` for engine tests: sotrag's engine sends every
request through it and reads the returned output collector, so wrapping the collector sees every output."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

# Called for every submitted request (its id and prompt), and for every output vLLM hands out for it.
OnSubmit = Callable[[str, Any], Awaitable[None] | None]
OnOutput = Callable[[str, Any], None]


class TappedCollector:
    """A request's vLLM output collector, passed through; each output goes to ``on_output`` on its way."""

    def __init__(self, inner: Any, request_id: str, on_output: OnOutput) -> None:
        self.inner, self.request_id, self.on_output = inner, request_id, on_output

    def _seen(self, out: Any) -> Any:
        if out is not None:
            self.on_output(self.request_id, out)
        return out

    def get_nowait(self) -> Any:
        return self._seen(self.inner.get_nowait())

    async def get(self) -> Any:
        return self._seen(await self.inner.get())

    def close(self) -> None:
        self.inner.close()


def tap_add_request(
    llm: Any, monkeypatch: pytest.MonkeyPatch, on_output: OnOutput, on_submit: OnSubmit | None = None
) -> None:
    """Wrap ``llm.add_request`` for the test: ``on_submit`` runs after each request went in (it may await, e.g.
    to delay the next one), ``on_output`` sees each of its outputs."""
    inner = llm.add_request

    async def add_request(request_id: str, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        collector = await inner(request_id, prompt, *args, **kwargs)
        if on_submit is not None:
            waited = on_submit(request_id, prompt)
            if waited is not None:
                await waited
        return TappedCollector(collector, request_id, on_output)

    monkeypatch.setattr(llm, "add_request", add_request)
