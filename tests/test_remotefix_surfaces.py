"""Bad seeds, text that cannot be encoded and engine errors, as every surface sees them: the library and the
request model refuse them with their documented errors, the CLI with one line and exit 2 before any engine starts,
and the server with a 4xx (or a 503) whose text names no server URL, and it keeps answering.

The server tests use the scripted engine (``tests/fakes.py``), made to fail as the remote engine does: what is
tested is the service's mapping of engine errors, not the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.base import (
    EngineError,
    EngineRejected,
    EngineUnavailable,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import AnswerRequest, InvalidQuestion, sampling_with
from sotrag.app.serving.app import create_app
from tests.fakes import ScriptedEngine, sampling
from tests.test_cli import assert_one_line_error, run_cli

SERVER = "http://10.9.8.7:8001/v1"
QUESTION = "What are good ways to sleep better at night?"
SETTINGS = Settings(
    sampling=sampling(point_max_tokens=8, normal_max_tokens=8),
    sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
)


# -- seeds ---------------------------------------------------------------------------------------------------


def test_a_seed_outside_vllms_range_is_refused_by_the_one_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for ok in (0, 2**63 - 1, -(2**63)):
        assert SamplingConfig(seed=ok).seed == ok
    for bad in (2**63, 2**64 - 1, -(2**63) - 1, 10**23):
        with pytest.raises(ValidationError, match="seed"):
            SamplingConfig(seed=bad)
        with pytest.raises(InvalidQuestion, match="seed"):  # a client's value (REST, OpenAI route): its 422
            sampling_with(SamplingConfig(), seed=bad)
    monkeypatch.setenv("SOTRAG_SAMPLING__SEED", str(2**64 - 1))
    with pytest.raises(ValidationError, match="seed"):
        Settings()


def test_cli_refuses_a_bad_seed_before_the_engine_starts() -> None:
    # A model that does not exist: had the engine been started, the error would be about the model.
    env = {"SOTRAG_ENGINE__MODEL": "/nonexistent/model"}
    assert_one_line_error(run_cli("ask", "hi there", "--seed", "99999999999999999999999", env=env), 2, "--seed")
    proc = run_cli("ask", "hi there", env={**env, "SOTRAG_SAMPLING__SEED": str(2**63)})
    assert_one_line_error(proc, 2, "SOTRAG_SAMPLING__SEED")


# -- text that cannot be encoded -----------------------------------------------------------------------------


def test_cli_says_a_question_that_is_not_utf8_is_not() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", "ask", b"caf\xe9 roses"],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1",
                                                          "SOTRAG_ENGINE__MODEL": "/nonexistent/model"},
    )
    assert_one_line_error(proc, 2, "not valid UTF-8")
    assert "0xe9" in proc.stderr


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"question": "a\ud800b"}, "the question"),
        ({"question": QUESTION, "history": (("fine", "x\udfffy"),)}, "history turn 1"),
        ({"question": QUESTION, "filters": {"source": "a\udce9"}}, "filter 'source'"),
        ({"question": QUESTION, "filters": {"s\ud801": "a"}}, "a filter name"),
    ],
)
async def test_the_library_refuses_text_that_cannot_be_encoded(fields: dict[str, Any], what: str) -> None:
    """It used to reach the tokenizer and come back as a TypeError."""
    pipeline = SoTPipeline(ScriptedEngine(), SETTINGS)
    with pytest.raises(InvalidQuestion, match=f"{what} is not valid Unicode"):
        await pipeline.validate(AnswerRequest(**fields))
    with pytest.raises(InvalidQuestion):
        await pipeline.run(AnswerRequest(**fields))


# -- engine errors over HTTP ---------------------------------------------------------------------------------


class FailingEngine(ScriptedEngine):
    """The scripted engine, failing its next requests with ``fail`` (then answering again)."""

    fail: EngineError | None = None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if self.fail is not None:
            raise self.fail
        async for delta in super().generate(request):
            yield delta


@pytest.fixture(scope="module")
def engine() -> FailingEngine:
    return FailingEngine()


@pytest.fixture(scope="module")
async def client(engine: FailingEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS, pipeline=SoTPipeline(engine, SETTINGS), ui=False)
    await app.state.service.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=120) as c:
        yield c
    await app.state.service.stop()


@pytest.fixture
def failing(engine: FailingEngine) -> Iterator[FailingEngine]:
    yield engine
    engine.fail = None


ERRORS = [
    (EngineRejected(f"the vLLM server {SERVER} answered 400: seed must be in int64", param="seed"), 422, "seed"),
    (EngineUnavailable(f"no vLLM server is up: {SERVER} (connection refused)"), 503, "no vLLM server is up"),
    (EngineError(f"the vLLM server {SERVER} failed the request: out of memory"), 500, "out of memory"),
]


def _no_internals(text: str) -> None:
    assert "10.9.8.7" not in text and "http://" not in text and "Traceback" not in text, text


@pytest.mark.parametrize(("error", "status", "needle"), ERRORS)
async def test_engine_errors_map_to_their_status_and_name_no_server(
    client: httpx.AsyncClient, failing: FailingEngine, error: EngineError, status: int, needle: str
) -> None:
    failing.fail = error
    r = await client.post("/v1/answer", json={"question": QUESTION, "mode": "normal"})
    assert r.status_code == status and needle in r.json()["detail"], r.text
    assert (r.headers.get("retry-after") is not None) == (status == 503), r.headers  # 503: try again shortly
    _no_internals(r.text)

    r = await client.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "stream": True})
    errors = [line for line in r.text.splitlines() if line.startswith("data: ") and "detail" in line]
    assert errors and needle in errors[-1], r.text
    _no_internals(r.text)

    body = {"model": "sotrag-normal", "messages": [{"role": "user", "content": QUESTION}]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == status and needle in r.json()["error"]["message"], r.text
    _no_internals(r.text)
    r = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert needle in r.text and "[DONE]" not in r.text.split(needle)[0], r.text
    _no_internals(r.text)

    failing.fail = None  # the server keeps answering
    r = await client.post("/v1/answer", json={"question": QUESTION, "mode": "normal"})
    assert r.status_code == 200, r.text


async def test_a_seed_out_of_range_on_the_openai_route_is_the_clients_error(client: httpx.AsyncClient) -> None:
    body = {"model": "sotrag-normal", "messages": [{"role": "user", "content": QUESTION}], "temperature": 1}
    for seed in (2**63, 2**64 - 1):
        r = await client.post("/v1/chat/completions", json={**body, "seed": seed})
        assert 400 <= r.status_code < 500 and "seed" in r.json()["error"]["message"], r.text
        assert r.json()["error"]["param"] == "seed", r.text
    r = await client.post("/v1/chat/completions", json={**body, "seed": 2**63 - 1})
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["object"] == "chat.completion"


@pytest.mark.parametrize(("error", "code"), [(EngineRejected("the server refused seed", param="seed"), 2),
                                             (EngineUnavailable("no vLLM server is up"), 1)])
def test_cli_exits_2_when_a_server_refuses_a_value_and_1_when_it_cannot_run(
    monkeypatch: pytest.MonkeyPatch, error: EngineError, code: int
) -> None:
    from typer.testing import CliRunner

    import sotrag.app.cli.ask as ask_module
    from sotrag.app.cli.root import app

    async def refused(*args: Any) -> None:
        raise error

    monkeypatch.setattr(ask_module, "_ask", refused)
    result = CliRunner().invoke(app, ["ask", "hi there", "--engine-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == code, result.output
    assert str(error) in result.output and "Traceback" not in result.output
