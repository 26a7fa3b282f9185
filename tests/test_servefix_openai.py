"""The OpenAI routes' bad-input classes an audit found as 500s or silent drops: sampling parameter combinations
(``top_p: 0`` with a temperature was a 500), a ``response_format`` schema the engine's compiler refuses (was an
error chunk after the stream started, with xgrammar's timestamp and source path), and non-text content parts
(were dropped without a word).

The answers come from the scripted engine (``tests/fakes.py``): what is tested is the route, not the model.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.engines.json_grammar import SchemaError, clean_reason, compact_json_grammar
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from tests.fakes import ScriptedEngine, default_skeleton, sampling

SAMPLING = sampling(point_max_tokens=4, normal_max_tokens=4)
SOT = SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4)
USER = [{"role": "user", "content": "What helps roses survive the winter?"}]
INTERNALS = re.compile(r"\[\d\d:\d\d:\d\d\]|\.cc:\d+|/project/|Traceback|File \"")


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, ScriptedEngine]]:
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " word" * 8, "normal": " word" * 8})
    s = Settings(sampling=SAMPLING, sot=SOT)
    app = create_app(s, pipeline=SoTPipeline(engine, s), ui=False)
    service = app.state.service
    await service.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=60) as c:
            yield c, engine
    finally:
        await service.stop()


def assert_clean(r: httpx.Response, status: int, param: str | None) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert not INTERNALS.search(r.text), r.text
    error = r.json()["error"]
    assert error["param"] == param, error
    assert "\n" not in error["message"]
    return str(error["message"])


# -- 1. sampling parameters ---------------------------------------------------------------------------------

TEMPERATURES = [None, 0, 0.0, 0.7, 1, 2]
TOP_PS = [None, 0, 0.0, 0.5, 1, 1.0]
SEEDS = [None, 0, 7]
MAX_TOKENS = [None, 1, 3]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("stream", [False, True])
async def test_every_documented_sampling_combination_answers(path: str, stream: bool) -> None:
    """Every combination of documented values (temperature 0-2, top_p 0-1 with 0 greedy, seed, max_tokens) is
    answered, streamed or not, on both routes; ``top_p: 0`` is greedy whatever the temperature."""
    async with client() as (c, engine):
        for temperature, top_p, seed, max_tokens in itertools.product(TEMPERATURES, TOP_PS, SEEDS, MAX_TOKENS):
            fields = {"temperature": temperature, "top_p": top_p, "seed": seed, "max_tokens": max_tokens}
            body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
            body |= {"model": "sotrag-normal", "stream": stream}
            body |= {"messages": USER} if "chat" in path else {"prompt": USER[0]["content"]}
            before = len(engine.requests)
            r = await c.post(path, json=body)
            assert r.status_code == 200, (body, r.text)
            if stream:
                assert '"error"' not in r.text, (body, r.text)
                assert r.text.rstrip().endswith("data: [DONE]")
            sent = engine.requests[before:]
            assert sent, body
            for request in sent:
                s = request.sampling
                if top_p is not None and top_p == 0:
                    assert s.temperature == 0.0, (body, s)
                elif temperature is not None:
                    assert s.temperature == float(temperature), (body, s)
                if top_p:
                    assert s.top_p == float(top_p), (body, s)


EDGES = st.sampled_from([None, 0, 0.0, 1, 1.0, 2, 0.5])  # the documented bounds, where the 500 was
NUMBERS = st.one_of(EDGES, EDGES, st.integers(-3, 40), st.floats(-1, 3, allow_nan=False), st.booleans(),
                    st.text(max_size=3))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(temperature=NUMBERS, top_p=NUMBERS, seed=NUMBERS, max_tokens=NUMBERS, stream=st.booleans(),
       chat=st.booleans())
async def test_any_sampling_values_answer_or_get_a_4xx_never_a_500(
    temperature: Any, top_p: Any, seed: Any, max_tokens: Any, stream: bool, chat: bool
) -> None:
    fields = {"temperature": temperature, "top_p": top_p, "seed": seed, "max_tokens": max_tokens}
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    body |= {"model": "sotrag-normal", "stream": stream}
    body |= {"messages": USER} if chat else {"prompt": USER[0]["content"]}
    async with client() as (c, _):
        r = await c.post("/v1/chat/completions" if chat else "/v1/completions", json=body)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code != 200:
        assert_clean(r, r.status_code, r.json()["error"]["param"])
    elif stream:
        assert '"error"' not in r.text, (body, r.text)


# -- 2. response_format schemas -----------------------------------------------------------------------------

BAD_SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "["}}},
    {"type": "integer", "minimum": 5, "maximum": 1},
    {"$ref": "#/definitions/x"},
    {"type": "strin"},
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_schema_the_engine_cannot_compile_is_a_422_before_any_stream(schema: Any, stream: bool) -> None:
    pytest.importorskip("xgrammar")
    body = {"model": "sotrag-normal", "messages": USER, "stream": stream,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    async with client() as (c, engine):
        r = await c.post("/v1/chat/completions", json=body)
        message = assert_clean(r, 422, "response_format")
        assert message.startswith("the JSON schema cannot be used for structured output: "), message
        assert not engine.requests  # refused before anything reached the engine
        ok = await c.post("/v1/chat/completions", json={**body, "response_format": {"type": "json_object"}})
        assert ok.status_code == 200, ok.text  # the connection and the server stay usable


def test_the_shared_compiler_strips_xgrammars_prefix() -> None:
    pytest.importorskip("xgrammar")
    with pytest.raises(SchemaError) as caught:
        compact_json_grammar(json.dumps({"type": "integer", "minimum": 5, "maximum": 1}))
    assert str(caught.value) == (
        "the JSON schema cannot be used for structured output: Invalid range: minimum greater than maximum"
    )
    assert clean_reason(RuntimeError("[22:51:24] /project/cpp/x.cc:83: Regex error\nmore")) == "Regex error"
    assert compact_json_grammar(json.dumps({"type": "object"}))


def test_the_vllm_engine_compiles_with_the_shared_function() -> None:
    """One compiler for the route's check and the engine's decoding: they cannot disagree."""
    from sotrag.app.engines import vllm

    pytest.importorskip("xgrammar")
    with pytest.raises(SchemaError):
        vllm._compact_json_grammar(json.dumps({"type": "strin"}))


# -- 5. content parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ],
)
@pytest.mark.parametrize("with_text", [False, True])
async def test_non_text_content_parts_are_refused_naming_their_type(part: dict[str, Any], with_text: bool) -> None:
    parts = [{"type": "text", "text": "What is in this picture?"}, part] if with_text else [part]
    async with client() as (c, engine):
        for messages in (
            [{"role": "user", "content": parts}],
            [{"role": "user", "content": parts}, {"role": "assistant", "content": "a"}, *USER],  # in the history
        ):
            r = await c.post("/v1/chat/completions", json={"model": "sotrag-normal", "messages": messages})
            message = assert_clean(r, 400, "messages")
            assert part["type"] in message
        assert not engine.requests
        text_parts = [{"role": "user", "content": [{"type": "text", "text": "What helps roses?"}]}]
        ok = await c.post("/v1/chat/completions", json={"model": "sotrag-normal", "messages": text_parts})
        assert ok.status_code == 200, ok.text
