"""A submitted request's stream wrapper (``vllm._Submitted``) lives only as long as its answer holds it: nothing
keeps it, its output collector or its generator after the answer is done (a cache on the class once kept every
point request of every answer for the life of the process). The seed warning is still logged once a process."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sotrag.app.engines import vllm


class _Engine:
    async def _stream(self, collector: Any, request_id: str, prompt_tokens: int) -> AsyncIterator[Any]:
        yield request_id


def test_a_submitted_request_is_freed_once_dropped() -> None:
    engine, collector = _Engine(), object()
    first = vllm._Submitted(engine, collector, "r-1", 3)  # type: ignore[arg-type]
    second = vllm._Submitted(engine, collector, "r-1", 3)  # type: ignore[arg-type]
    assert first is not second  # one wrapper per submission, never a shared (cached) one
    ref = weakref.ref(first)
    del first, second
    gc.collect()
    assert ref() is None


def test_the_seed_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    vllm._warn_seed_dropped.cache_clear()
    with caplog.at_level(logging.WARNING, logger=vllm.log.name):
        vllm._warn_seed_dropped()
        vllm._warn_seed_dropped()
    assert sum("seeds are ignored" in r.getMessage() for r in caplog.records) == 1
