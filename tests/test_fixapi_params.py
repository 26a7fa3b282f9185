"""The OpenAI routes' parameter classes an audit found open: every parameter of the ``openai`` package's request
types is honoured or refused by name (``reasoning_effort``, ``store: true``, ... were ignored with a 200); a wrong
type for any parameter is a 422 whose ``param`` is the top-level name and whose message has no validator internals
(``stop.constrained-str``); no error echoes a client's value whole (a 1 MB model name came back in a 1 MB 404).

The answers come from the scripted engine: what is tested is the route, not the model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai.types import completion_create_params as legacy_params
from openai.types.chat import completion_create_params as chat_params

from sotrag.app.serving.openai_protocol import ChatCompletionRequest, CompletionRequest
from tests.fakes import ScriptedEngine
from tests.scripted_app import scripted_client

CHAT = {"model": "sotrag-normal", "messages": [{"role": "user", "content": "What helps roses survive winter?"}]}
LEGACY = {"model": "sotrag-normal", "prompt": "What helps roses survive winter?"}
# pydantic's names for a union's members and validators: never a client's field
INTERNALS = re.compile(r"constrained-|function-|lax-or-strict|json-or-python|tagged-union|is-instance|nullable|"
                       r"\.(str|int|float|bool|dict|list|none)\b|\w\[|Traceback|pydantic")


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedEngine]]:
    async with scripted_client() as pair:
        yield pair


def _keys(*typed_dicts: Any) -> set[str]:
    keys: set[str] = set()
    for td in typed_dicts:
        keys |= set(td.__required_keys__) | set(td.__optional_keys__)
    return keys


CHAT_PARAMS = _keys(chat_params.CompletionCreateParamsNonStreaming, chat_params.CompletionCreateParamsStreaming)
LEGACY_PARAMS = _keys(legacy_params.CompletionCreateParamsNonStreaming, legacy_params.CompletionCreateParamsStreaming)


# -- 11. every documented parameter is known: honoured, or refused by name ------------------------------------


def test_every_openai_parameter_is_a_field_of_the_request_models() -> None:
    """A parameter the ``openai`` package gains is not a field here until someone decides on it; until then the
    route refuses it by name (``test_unknown_parameters_are_refused_by_name``), and this test fails."""
    assert CHAT_PARAMS - set(ChatCompletionRequest.model_fields) == set()
    assert LEGACY_PARAMS - set(CompletionRequest.model_fields) == set()


def test_every_parameter_is_in_the_documented_table() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "service.md").read_text(encoding="utf-8")
    table = text.split("#### OpenAI parameters", 1)[1].split("\n### ")[0]
    missing = {p for p in CHAT_PARAMS | LEGACY_PARAMS if f"`{p}" not in table}
    assert missing == set()


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        ("/v1/chat/completions", {"reasoning_effort": "low"}),
        ("/v1/chat/completions", {"reasoning_effort": "none"}),
        ("/v1/chat/completions", {"web_search_options": {}}),
        ("/v1/chat/completions", {"service_tier": "flex"}),
        ("/v1/chat/completions", {"service_tier": "priority"}),
        ("/v1/chat/completions", {"verbosity": "low"}),
        ("/v1/chat/completions", {"verbosity": "high"}),
        ("/v1/chat/completions", {"store": True}),
        ("/v1/chat/completions", {"moderation": {"model": "omni-moderation-latest"}}),
        ("/v1/chat/completions", {"prompt_cache_options": {"ttl": "1h"}}),
        ("/v1/chat/completions", {"prompt_cache_retention": "24h"}),
        ("/v1/chat/completions", {"guided_regex": "a+"}),  # not OpenAI's: unknown, so refused too
        ("/v1/completions", {"top_k": 5}),
        ("/v1/completions", {"reasoning_effort": "low"}),
    ],
)
async def test_unhonoured_parameters_are_400_naming_them(
    client: tuple[httpx.AsyncClient, ScriptedEngine], route: str, fields: dict[str, Any]
) -> None:
    c, engine = client
    body = {**(CHAT if route == "/v1/chat/completions" else LEGACY), **fields}
    r = await c.post(route, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    (param,) = fields
    assert error["param"] == param and param in error["message"], error
    assert error["code"] == "unsupported_parameter" and error["type"] == "invalid_request_error"
    assert not engine.requests


@pytest.mark.parametrize(
    "fields",
    [
        {"store": False}, {"service_tier": "auto"}, {"service_tier": "default"}, {"verbosity": "medium"},
        {"reasoning_effort": None}, {"web_search_options": None}, {"metadata": {"team": "a"}}, {"user": "u1"},
        {"safety_identifier": "h"}, {"prompt_cache_key": "k"}, {"prompt_cache_retention": "in_memory"},
        {"parallel_tool_calls": False}, {"moderation": None},
    ],
)
async def test_neutral_values_are_accepted(
    client: tuple[httpx.AsyncClient, ScriptedEngine], fields: dict[str, Any]
) -> None:
    c, _ = client
    r = await c.post("/v1/chat/completions", json={**CHAT, **fields})
    assert r.status_code == 200, r.text


# -- 8. a wrong type for any parameter: 422, param the top-level name, no internals ---------------------------

WRONG = [{"x": [1]}, 5, "x", [1], True, -3]


async def _wrong_type_errors(c: httpx.AsyncClient, route: str, base: dict[str, Any], fields: set[str]) -> None:
    """For each field, the wrong values that are refused must each name the field cleanly; at least one is."""
    for field in sorted(fields):
        refused = 0
        for value in WRONG:
            r = await c.post(route, json={**base, field: value})
            if r.status_code != 422:
                continue
            refused += 1
            if route.startswith("/v1/answer"):
                message, param = r.json()["detail"], field
            else:
                error = r.json()["error"]
                message, param = error["message"], error["param"]
            assert param == field, (field, value, r.text)
            assert message.startswith(field), (field, value, message)
            assert not INTERNALS.search(message), (field, value, message)
        assert refused, f"no wrong type refused for {field}"


async def test_wrong_types_name_the_top_level_parameter(client: tuple[httpx.AsyncClient, ScriptedEngine]) -> None:
    c, _ = client
    chat_fields = set(ChatCompletionRequest.model_fields) - {"n"}  # n: any other value is a 422 too, tested apart
    await _wrong_type_errors(c, "/v1/chat/completions", CHAT, chat_fields)
    await _wrong_type_errors(c, "/v1/completions", LEGACY, set(CompletionRequest.model_fields) - {"n"})
    from sotrag.app.serving.api_models import AnswerRequest

    await _wrong_type_errors(c, "/v1/answer", {"question": "roses?"}, set(AnswerRequest.model_fields))


@pytest.mark.parametrize("stop", [5, [""], [5], {"a": 1}])
async def test_stop_and_tool_choice_errors_name_the_parameter(
    client: tuple[httpx.AsyncClient, ScriptedEngine], stop: Any
) -> None:
    c, _ = client
    for field, value in (("stop", stop), ("tool_choice", 5 if isinstance(stop, dict) or stop == [""] else stop)):
        r = await c.post("/v1/chat/completions", json={**CHAT, field: value})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["param"] == field, error
        assert not INTERNALS.search(error["message"]), error


# -- 7. no error echoes a client's value whole ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
async def test_a_huge_model_name_is_not_echoed_whole(
    client: tuple[httpx.AsyncClient, ScriptedEngine], route: str
) -> None:
    c, _ = client
    name = "m" * 200_000
    r = await c.post(route, json={**(CHAT if "chat" in route else LEGACY), "model": name})
    assert r.status_code == 404, r.text[:300]
    assert len(r.content) < 2000 and r.json()["error"]["param"] == "model"
    r = await c.get("/v1/models/" + "m" * 30_000)
    assert r.status_code == 404 and len(r.content) < 2000, len(r.content)


async def test_a_huge_unknown_parameter_name_is_not_echoed_whole(
    client: tuple[httpx.AsyncClient, ScriptedEngine],
) -> None:
    c, _ = client
    r = await c.post("/v1/chat/completions", json={**CHAT, "k" * 100_000: 1})
    assert r.status_code == 400 and len(r.content) < 2000, len(r.content)
