"""A client's ``response_format`` schema cannot stall the server or the engine (an audit found both): what a schema
may cost is bounded before any work (size, nesting, properties/enum values/branches with ``$ref`` expanded,
repetition counts), on every surface that takes one (the OpenAI route, and the converter every engine calls, so the
library too); the conversion runs only once the answer is admitted (a 429 spends nothing on it), in one thread,
and a conversion past its time is refused.

The answers come from the scripted engine: what is tested is the route and the limits, not the model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sotrag.app.engines.json_grammar import LIMITS, SchemaError, check_schema, compact_json_grammar
from sotrag.app.serving import openai_api
from sotrag.app.serving.limits import Busy
from tests.fakes import ScriptedEngine
from tests.scripted_app import scripted_client

USER = [{"role": "user", "content": "What helps roses survive winter?"}]


def props(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


def deep(n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "string"}
    for _ in range(n):
        d = {"type": "object", "properties": {"a": d}, "required": ["a"]}
    return d


def doubling_refs(n: int) -> dict[str, Any]:
    defs: dict[str, Any] = {"d0": {"type": "string"}}
    for i in range(1, n + 1):
        defs[f"d{i}"] = {"type": "object", "properties": {"x": {"$ref": f"#/$defs/d{i - 1}"},
                                                        "y": {"$ref": f"#/$defs/d{i - 1}"}}}
    return {"$defs": defs, "$ref": f"#/$defs/d{n}"}


def ref_chain(defs: int, items: int) -> dict[str, Any]:
    """``defs`` definitions, each ``items`` arrays deep around a reference to the next."""
    chain: dict[str, Any] = {f"d{defs}": {"type": "string"}}
    for i in range(defs):
        inner: dict[str, Any] = {"$ref": f"#/$defs/d{i + 1}"}
        for _ in range(items):
            inner = {"items": inner}
        chain[f"d{i}"] = inner
    return {"$defs": chain, "$ref": "#/$defs/d0"}


OVER_LIMITS = {
    "5000 optional properties": props(5000),
    "400 properties (under the byte limit)": props(400),
    "nested 300 deep": deep(300),
    "nested 30 deep (small)": deep(30),
    "5000 enum values": {"enum": list(range(5000))},
    "300 anyOf branches": {"anyOf": [{"const": i} for i in range(300)]},
    "a $ref chain doubling 12 times": doubling_refs(12),
    "a chain of 63 $refs, each 19 arrays deep (was a RecursionError)": ref_chain(63, 19),
    "maxLength 10^9": {"type": "string", "maxLength": 10**9},
    "maxLength NaN": {"type": "string", "maxLength": float("nan")},
    "minItems Infinity": {"type": "array", "minItems": float("inf")},
    "maxLength 80": {"type": "string", "maxLength": 80},
    "two strings of maxLength 20": {"type": "object", "properties": {"a": {"type": "string", "maxLength": 20},
                                                                     "b": {"type": "string", "maxLength": 20}}},
    "a pattern repeating 80 times": {"type": "string", "pattern": "^.{1,80}$"},
    "minItems 10^5": {"type": "array", "items": {"type": "integer"}, "minItems": 100_000},
    "a pattern repeating 10^6 times": {"type": "string", "pattern": "^(ab){1,1000000}$"},
    "a remote $ref": {"$ref": "http://169.254.169.254/schema"},
}
WITHIN = {
    "a pydantic-style model": {
        "$defs": {"Point": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 32},
                                                             "score": {"type": "integer", "minimum": 0}},
                            "required": ["title", "score"]}},
        "type": "object", "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/Point"}}},
        "required": ["points"],
    },
    "100 properties": props(100),
    "nested 10 deep": deep(10),
    "a short pattern": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{4}$"},
    "a long list of short strings": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 1000},
    "a recursive tree": {"$defs": {"n": {"type": "object", "properties": {"kids": {"type": "array",
                                                                                   "items": {"$ref": "#/$defs/n"}}}}},
                         "$ref": "#/$defs/n"},
}


@pytest.mark.parametrize("name", list(OVER_LIMITS))
def test_check_schema_refuses_what_costs_too_much(name: str) -> None:
    with pytest.raises(SchemaError) as refused:
        check_schema(OVER_LIMITS[name])
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


@pytest.mark.parametrize("name", list(WITHIN))
def test_check_schema_admits_ordinary_schemas(name: str) -> None:
    check_schema(WITHIN[name])


def test_the_converter_every_engine_calls_applies_the_limits() -> None:
    """The in-process and remote engines (and so the library) convert through ``compact_json_grammar``."""
    for schema in (props(5000), deep(300)):
        with pytest.raises(SchemaError):
            compact_json_grammar(json.dumps(schema))
    assert LIMITS.max_nodes < 5000


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedEngine]]:
    async with scripted_client() as pair:
        yield pair


def _body(schema: Any) -> dict[str, Any]:
    return {"model": "sotrag-normal", "messages": USER,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}


@pytest.mark.parametrize("name", ["5000 optional properties", "nested 300 deep", "a $ref chain doubling 12 times"])
async def test_the_route_refuses_over_limit_schemas_without_converting_them(
    client: tuple[httpx.AsyncClient, ScriptedEngine], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    c, engine = client
    converted: list[str] = []
    monkeypatch.setattr(openai_api, "compact_json_grammar", lambda s: converted.append(s))
    r = await c.post("/v1/chat/completions", json=_body(OVER_LIMITS[name]))
    assert r.status_code == 422, r.text[:300]
    error = r.json()["error"]
    assert error["param"] == "response_format" and error["code"] == "invalid_json_schema"
    assert error["type"] == "invalid_request_error"
    assert converted == [] and engine.requests == []


async def test_the_schema_is_converted_only_after_admission(
    client: tuple[httpx.AsyncClient, ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, engine = client
    service = c._transport.app.state.service  # type: ignore[attr-defined]
    converted: list[str] = []
    monkeypatch.setattr(openai_api, "compact_json_grammar", lambda s: converted.append(s))

    def full() -> None:
        raise Busy("every answer slot and queue place is taken", retry_after_s=1)

    monkeypatch.setattr(service.limiter, "check", full)
    r = await c.post("/v1/chat/completions", json=_body(WITHIN["100 properties"]))
    assert r.status_code == 429, r.text[:300]
    assert converted == []  # refused by the limiter: nothing spent on the schema

    monkeypatch.undo()
    r = await c.post("/v1/chat/completions", json=_body(WITHIN["a pydantic-style model"]))
    assert r.status_code == 200, r.text[:300]
    sent = engine.requests[-1].sampling.json_schema
    assert sent is not None and json.loads(sent) == WITHIN["a pydantic-style model"]


async def test_a_conversion_past_its_time_is_refused_and_frees_its_place(
    client: tuple[httpx.AsyncClient, ScriptedEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, engine = client
    service = c._transport.app.state.service  # type: ignore[attr-defined]
    release = threading.Event()
    monkeypatch.setattr(openai_api, "compact_json_grammar", lambda s: release.wait(30))
    monkeypatch.setattr(openai_api, "SCHEMA_TIMEOUT_S", 0.05)
    try:
        r = await c.post("/v1/chat/completions", json=_body(WITHIN["100 properties"]))
    finally:
        release.set()
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["param"] == "response_format" and "to convert" in r.json()["error"]["message"]
    assert engine.requests == []
    assert service.limiter.queued == 0 and service.limiter.running == 0



def test_the_in_process_engine_refuses_an_over_limit_schema_before_vllm_sees_it() -> None:
    """The library's way in: ``SamplingConfig.json_schema`` reaches the engine's structured outputs."""
    from sotrag.app.engines.base import SamplingOptions
    from sotrag.app.engines.vllm import _structured_outputs

    built: list[dict[str, Any]] = []
    with pytest.raises(SchemaError):
        _structured_outputs(SamplingOptions(json_schema=json.dumps(props(5000))), lambda **kw: built.append(kw))
    assert built == []


async def test_the_remote_engine_refuses_an_over_limit_schema_before_sending_it() -> None:
    from sotrag.app.config import EngineConfig
    from sotrag.app.engines.base import EngineRejected, GenerationRequest, SamplingOptions
    from sotrag.app.engines.remote import RemoteEngine

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    engine = RemoteEngine(EngineConfig(urls=["http://10.1.2.3:8001/v1"], model="m", connect_retries=0))
    await engine.transport.client.aclose()
    engine.transport.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    engine.transport.pool.client = engine.transport.client
    server = engine.transport.pool.servers[0]
    server.up = server.probed = True
    server.features = {"token_ids": True, "structured_outputs": True}
    request = GenerationRequest(request_id="r1", prompt="x", prompt_token_ids=(1, 2, 3),
                                sampling=SamplingOptions(json_schema=json.dumps(deep(300))))
    try:
        with pytest.raises(EngineRejected) as refused:
            async for _ in engine.generate(request):
                pass
        assert refused.value.param == "response_format" and "nested too deeply" in refused.value.public
        assert sent == []
    finally:
        await engine.aclose()
