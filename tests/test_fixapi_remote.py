"""Remote-engine mode shows clients no upstream URL, credential or upstream error text (an audit found them on the
keyless ``/readyz`` and in 503 details), and an upstream outage is a 503 with Retry-After on every surface (an
upstream 404 was a 500 "the model's chat template failed").

The real ``RemoteEngine`` runs over mocked vLLM servers (``httpx.MockTransport``, both its clients): what is tested
is what reaches a client, not the model.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sotrag.app.config import EngineConfig, Settings, SoTConfig
from sotrag.app.engines.remote import RemoteEngine
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import AnswerRequest
from sotrag.app.serving.app import create_app
from sotrag.app.serving.errors import NotReady
from tests.fakes import sampling

URLS = ["http://internal-user:internal-pass@10.1.2.3:8001/v1", "http://internal-user:internal-pass@10.1.2.4:8001/v1"]
SECRETS = ("internal-user", "internal-pass", "10.1.2.", "http://", "cannot connect", "connection refused",
           "upstream says", "Traceback")
QUESTION = "What helps roses survive the winter?"
SETTINGS = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                    sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4))
Handler = Callable[[httpx.Request], httpx.Response]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("cannot connect: connection refused", request=request)


def not_found(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"error": {"message": "upstream says: no route /tokenize here", "code": 404}})


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text[:400])


def test_server_names_in_messages_and_the_log_have_no_credentials() -> None:
    engine = RemoteEngine(EngineConfig(urls=URLS, model="m"))
    assert [s.url for s in engine.transport.pool.servers] == ["http://10.1.2.3:8001/v1", "http://10.1.2.4:8001/v1"]
    assert all("internal-pass" in s.api_base for s in engine.transport.pool.servers)  # requests still carry them


@contextlib.asynccontextmanager
async def remote_app(handler: Handler, settings: Settings = SETTINGS) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app over a real RemoteEngine whose two servers answer with ``handler``; one marked down with a reason
    that names its URL, as the health check would."""
    engine = RemoteEngine(EngineConfig(urls=URLS, model="m", connect_retries=0, max_model_len=512))
    await engine.transport.client.aclose()
    engine.transport.sync.close()
    engine.transport.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    engine.transport.sync = httpx.Client(transport=httpx.MockTransport(handler))
    engine.transport.pool.client = engine.transport.client
    engine.transport.max_model_len = 512
    engine.tokens.server.special_ids = set()
    first, second = engine.transport.pool.servers
    first.up = first.probed = True
    first.features = {"token_ids": True, "structured_outputs": True}
    second.up, second.reason = False, f"cannot connect to {second.url}: connection refused"
    app = create_app(settings, pipeline=SoTPipeline(engine, settings), ui=False)
    service = app.state.service
    await service.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000",
                                     timeout=60) as c:
            yield c, service
    finally:
        await service.stop()
        await engine.aclose()


async def test_readyz_shows_labels_and_counts_never_urls_or_reasons() -> None:
    async with remote_app(refused) as (c, _):
        r = await c.get("/readyz")
        _clean(r.text)
        body = r.json()
        assert [s["url"] for s in body["servers"]] == ["server 1", "server 2"]
        assert [s["up"] for s in body["servers"]] == [True, False]
        assert all(s["reason"] is None for s in body["servers"])
        assert body["servers_up"] == 1 and body["servers_down"] == 1


async def test_with_a_key_set_a_probe_without_it_sees_counts_only() -> None:
    keyed = SETTINGS.model_copy(update={"api_key": SecretStr("pr0be-7f2a9c41d8e6b3")})
    async with remote_app(refused, keyed) as (c, _):
        r = await c.get("/readyz")
        _clean(r.text)
        assert r.json()["servers"] is None and r.json()["servers_up"] == 1 and r.json()["servers_down"] == 1
        r = await c.get("/readyz", headers={"authorization": "Bearer pr0be-7f2a9c41d8e6b3"})
        _clean(r.text)
        assert [s["url"] for s in r.json()["servers"]] == ["server 1", "server 2"]


@pytest.mark.parametrize("handler", [refused, not_found], ids=["unreachable", "upstream 404"])
async def test_an_upstream_outage_is_a_clean_503_with_retry_after_everywhere(handler: Handler) -> None:
    async with remote_app(handler) as (c, service):
        for stream in (False, True):
            r = await c.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "stream": stream})
            assert r.status_code == 503, r.text[:400]
            assert r.headers.get("retry-after"), r.headers
            assert "vLLM server" in r.json()["detail"]
            _clean(r.text)
        for route, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}]}),
                            ("/v1/completions", {"prompt": QUESTION})):
            r = await c.post(route, json={"model": "sotrag-normal", **body})
            assert r.status_code == 503, r.text[:400]
            assert r.headers.get("retry-after") and r.json()["error"]["type"] == "service_unavailable"
            _clean(r.text)
        # the UI asks the service: what it shows is the error's text
        with pytest.raises(NotReady) as caught:
            await service.answer(AnswerRequest(question=QUESTION, mode="normal"), surface="ui")
        _clean(str(caught.value))
        assert "chat template" not in str(caught.value)


async def test_a_stream_the_server_breaks_names_no_server_and_is_a_503() -> None:
    """Tokenizing works; the completion stream's server answers with an error event quoting itself."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2, 3], "count": 3, "max_model_len": 512})
        if request.url.path == "/detokenize":
            return httpx.Response(200, json={"prompt": "x"})
        if request.url.path == "/v1/completions":
            return httpx.Response(502, text="upstream says: bad gateway at 10.1.2.9")
        return httpx.Response(200, text="ok")

    async with remote_app(handler) as (c, _):
        r = await c.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "top_k": 0})
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text[:400]
        _clean(r.text)
        r = await c.post("/v1/chat/completions", json={"model": "sotrag-normal", "stream": True,
                                                       "messages": [{"role": "user", "content": QUESTION}]})
        errors = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {") and '"error"' in line]
        assert errors and "vLLM server" in errors[-1]["error"]["message"], r.text[:400]
        _clean(r.text)
