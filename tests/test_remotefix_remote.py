"""The remote engine's seeds, JSON schemas and server errors, against a mocked vLLM OpenAI server.

What is tested is what the transport sends and how it reads a server's refusals, not the model: a seed a vLLM CPU
server with chunked prefill would die on is not sent unless ``engine.remote_seeds`` says the servers take it; a
schema xgrammar rejects never leaves this process; a server's 400 is the client's ``EngineRejected`` (with the
parameter), no server up is ``EngineUnavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sotrag.app.config import EngineConfig
from sotrag.app.engines.base import (
    EngineError,
    EngineRejected,
    EngineUnavailable,
    GenerationRequest,
    SamplingOptions,
)
from sotrag.app.engines.remote import RemoteEngine

URL = "http://10.1.2.3:8001/v1"
Handler = Callable[[httpx.Request], httpx.Response]


def _chunk(text: str, finish: str | None) -> str:
    choice = {"index": 0, "text": text, "token_ids": [5], "finish_reason": finish}
    return "data: " + json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})


def _ok(request: httpx.Request) -> httpx.Response:
    body = _chunk("a", None) + "\n\n" + _chunk("b", "length") + "\n\ndata: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


async def _engine(handler: Handler, **config: Any) -> RemoteEngine:
    engine = RemoteEngine(EngineConfig(urls=[URL], model="m", connect_retries=0, **config))
    await engine.transport.client.aclose()
    engine.transport.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    engine.transport.pool.client = engine.transport.client
    engine.tokens.server.special_ids = set()
    server = engine.transport.pool.servers[0]
    server.up = server.probed = True  # (the model probe is not what these tests are about)
    server.features = {"token_ids": True, "structured_outputs": True}
    return engine


def _request(**sampling: Any) -> GenerationRequest:
    options = SamplingOptions(**sampling)
    return GenerationRequest(request_id="r1", prompt="x", prompt_token_ids=(1, 2, 3), sampling=options)


async def _drain(engine: RemoteEngine, request: GenerationRequest) -> str:
    return "".join([d.text async for d in engine.generate(request)])


@pytest.fixture
def bodies() -> list[dict[str, Any]]:
    return []


def _recording(bodies: list[dict[str, Any]], answer: Handler = _ok) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/completions":
            return httpx.Response(200, text="ok")
        bodies.append(json.loads(request.content))
        return answer(request)

    return handler


async def test_a_sampled_seed_is_not_sent_unless_the_servers_are_said_to_take_it(
    bodies: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A seeded sampled request killed a vLLM CPU server (chunked prefill on, its default) for every client."""
    engine = await _engine(_recording(bodies))
    try:
        assert await _drain(engine, _request(seed=7, temperature=1.0)) == "ab"
        assert await _drain(engine, _request(seed=7, temperature=0.0)) == "ab"  # greedy: no seed needed
        assert "seed" not in bodies[0] and "seed" not in bodies[1]
    finally:
        await engine.aclose()
    engine = await _engine(_recording(bodies), remote_seeds=True)
    try:
        await _drain(engine, _request(seed=7, temperature=1.0))
        assert bodies[2]["seed"] == 7
    finally:
        await engine.aclose()


async def test_a_schema_xgrammar_rejects_is_refused_before_anything_is_sent(bodies: list[dict[str, Any]]) -> None:
    pytest.importorskip("xgrammar")
    engine = await _engine(_recording(bodies))
    bad = json.dumps({"type": "string", "minLength": 5, "maxLength": 2})
    try:
        with pytest.raises(EngineRejected) as caught:
            await _drain(engine, _request(json_schema=bad))
        assert caught.value.param == "response_format" and caught.value.status == 422
        assert str(caught.value).endswith("minLength 5 is greater than maxLength 2")  # not xgrammar's log prefix
        assert bodies == []
        await _drain(engine, _request(json_schema=json.dumps({"type": "object"})))
        assert bodies[0]["structured_outputs"]["json"] == {"type": "object"}
    finally:
        await engine.aclose()


def _refusal(status: int, message: str, param: str | None = None) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": message, "type": "BadRequestError", "param": param, "code": status}}
        return httpx.Response(status, json=body)

    return answer


@pytest.mark.parametrize(
    ("status", "kind", "public_status"),
    [(400, EngineRejected, 422), (503, EngineUnavailable, 503), (500, EngineUnavailable, 503),
     (404, EngineUnavailable, 503), (401, EngineError, 500)],
)
async def test_a_server_refusal_says_whose_fault_it_is_and_its_public_text_names_no_server(
    bodies: list[dict[str, Any]], status: int, kind: type[EngineError], public_status: int
) -> None:
    engine = await _engine(_recording(bodies, _refusal(status, "seed must be in range", "seed")))
    try:
        with pytest.raises(EngineError) as caught:
            await _drain(engine, _request())
        error = caught.value
        assert type(error) is kind and error.status == public_status
        assert URL.split("/v1")[0] in str(error)  # the log and the CLI keep where it happened
        # neither the server's address nor its text reaches a client (the log keeps both)
        assert "10.1.2.3" not in error.public and "must be in range" not in error.public
        if kind is EngineRejected:
            assert isinstance(error, EngineRejected) and error.param == "seed" and "seed" in error.public
    finally:
        await engine.aclose()


async def test_an_error_event_mid_stream_for_a_bad_value_is_the_clients() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        error = {"message": "bad grammar", "type": "BadRequestError", "param": "structured_outputs", "code": 400}
        text = f"data: {json.dumps({'error': error})}\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    engine = await _engine(_recording([], answer))
    try:
        with pytest.raises(EngineRejected) as caught:
            await _drain(engine, _request())
        assert caught.value.param == "structured_outputs" and "10.1.2.3" not in caught.value.public
    finally:
        await engine.aclose()


async def test_no_server_up_is_unavailable(bodies: list[dict[str, Any]]) -> None:
    engine = await _engine(_recording(bodies))
    try:
        engine.transport.pool.servers[0].up = False
        with pytest.raises(EngineUnavailable) as caught:
            await _drain(engine, _request())
        assert caught.value.status == 503 and "10.1.2.3" not in caught.value.public
    finally:
        await engine.aclose()



async def test_a_server_that_cannot_be_reached_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    engine = await _engine(handler)
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await _drain(engine, _request())
        assert "10.1.2.3" in str(caught.value)
        assert caught.value.public.startswith("no vLLM server is up") and "refused" not in caught.value.public
    finally:
        await engine.aclose()
