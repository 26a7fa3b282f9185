"""``POST /v1/answer`` is as strict as the OpenAI route: a string for a boolean (``"stream": "yes"`` streamed), a
boolean for a number (``"top_k": true`` was 1) or a string for a number (``"temperature": "0.5"``) is a 422 naming
the field; JSON numbers work as numbers (``1`` for a float); a history turn refuses unknown keys as the body
does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedEngine
from tests.scripted_app import scripted_client

Q = {"question": "roses in winter?", "mode": "normal"}


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedEngine]]:
    async with scripted_client() as (c, engine):
        yield c, engine


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream": "true"}, "stream"),
        ({"top_k": True}, "top_k"),
        ({"top_k": "3"}, "top_k"),
        ({"top_k": 2.0}, "top_k"),
        ({"max_tokens": "4"}, "max_tokens"),
        ({"max_tokens": False}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"history": [{"question": "a", "answer": "b", "extra": 1}]}, "history.0.extra"),
        ({"history": [{"question": "a", "answer": "b", "answr": "c"}]}, "history.0.answr"),
    ],
)
async def test_wrong_types_and_unknown_turn_keys_are_422_naming_the_field(
    client: tuple[httpx.AsyncClient, ScriptedEngine], fields: dict[str, Any], field: str
) -> None:
    c, engine = client
    r = await c.post("/v1/answer", json={**Q, **fields})
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert detail.startswith(f"{field}: ") and "\n" not in detail, detail
    assert detail.count(":") == 1, detail  # one error, not one per branch of a union
    assert not engine.requests


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 1}, {"temperature": 0}, {"temperature": 0.5}, {"temperature": None}, {"top_k": 0},
        {"top_k": 3}, {"max_tokens": 2}, {"stream": True}, {"stream": False},
        {"history": [{"question": "a", "answer": "b"}]},
    ],
)
async def test_right_types_still_answer(
    client: tuple[httpx.AsyncClient, ScriptedEngine], fields: dict[str, Any]
) -> None:
    c, engine = client
    r = await c.post("/v1/answer", json={**Q, **fields})
    assert r.status_code == 200, r.text[:300]
    if fields.get("temperature") is not None:
        assert engine.requests[-1].sampling.temperature == float(fields["temperature"])
    if fields.get("stream"):
        assert r.headers["content-type"].startswith("text/event-stream")
    else:
        assert r.headers["content-type"].startswith("application/json")
