"""The OpenAI routes against OpenAI's schema (issue 23, item 5): every response and stream chunk validates, strictly,
as the ``openai`` package's own types; every parameter is honoured or refused with a 400 naming it; bad values get
422; and the ``openai`` client, LangChain's ``ChatOpenAI`` (``bind_tools`` included) and LlamaIndex's
``OpenAILike`` (with its defaults: the legacy ``/v1/completions``) work against it.

The first tests need no engine (a refusal or a bad value is answered before any answer starts); the rest use the
session's real vLLM engine on the tiny model, in-process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from sotrag.app.serving.openai_protocol import ChatCompletionRequest

QUESTION = "What are good ways to sleep better at night?"
USER = [{"role": "user", "content": QUESTION}]
SETTINGS = Settings(
    sampling=SamplingConfig(
        temperature=0.0, skeleton_max_tokens=512, point_max_tokens=12, point_min_tokens=12, normal_max_tokens=24,
    ),
    sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
)
BASE = "http://127.0.0.1"  # a loopback host: the Host allow-list lets it through
WEATHER_TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "sotrag-normal", "messages": USER, **fields}


@pytest.fixture(scope="module")
async def idle_client() -> AsyncIterator[httpx.AsyncClient]:
    """An app whose engine never starts: whatever gets past validation and refusal would answer 503."""
    app = create_app(SETTINGS, ui=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(tools=[WEATHER_TOOL]), "tools"),
        (chat(tool_choice={"type": "function", "function": {"name": "weather"}}), "tool_choice"),
        (chat(tool_choice="required"), "tool_choice"),
        (chat(functions=[{"name": "weather"}]), "functions"),
        (chat(logprobs=True), "logprobs"),
        (chat(logprobs=True, top_logprobs=2), "logprobs"),
        (chat(presence_penalty=0.5), "presence_penalty"),
        (chat(frequency_penalty=-1), "frequency_penalty"),
        (chat(logit_bias={"50256": -100}), "logit_bias"),
        (chat(modalities=["text", "audio"]), "modalities"),
        (chat(model="sotrag-sot", stop=["\n"]), "stop"),
        (chat(model="sotrag-sot", response_format={"type": "json_object"}), "response_format"),
        ({"model": "sotrag-normal", "prompt": "hi", "echo": True}, "echo"),
        ({"model": "sotrag-normal", "prompt": "hi", "best_of": 3}, "best_of"),
        ({"model": "sotrag-normal", "prompt": "hi", "logprobs": 2}, "logprobs"),
        ({"model": "sotrag-sot", "prompt": "hi", "stop": "."}, "stop"),
    ],
)
async def test_parameters_sotrag_cannot_honour_get_a_400_naming_them(
    idle_client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    r = await idle_client.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_p": 5}, "top_p"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"seed": True}, "seed"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"stream": "yes"}, "stream"),
    ],
)
async def test_invalid_values_get_422(idle_client: httpx.AsyncClient, fields: dict[str, Any], param: str) -> None:
    r = await idle_client.post("/v1/chat/completions", json=chat(**fields))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"].split(".")[0] == param


async def test_neutral_values_pass_to_the_engine(idle_client: httpx.AsyncClient) -> None:
    """Defaults a client sends anyway (LangChain, LlamaIndex) are not refused: here they reach the (not started)
    engine's 503."""
    body = chat(tool_choice="none", logprobs=False, presence_penalty=0, frequency_penalty=0.0, seed=3, top_p=0.9,
                stop=None, response_format={"type": "text"}, user="me", parallel_tool_calls=True, n=1)
    r = await idle_client.post("/v1/chat/completions", json=body)
    assert r.status_code == 503, r.text


def test_request_fields_become_sampling_settings() -> None:
    body = ChatCompletionRequest.model_validate(chat(seed=7, top_p=0.5, stop="END"))
    assert body.sampling_update() == {"seed": 7, "top_p": 0.5, "stop": ["END"]}
    greedy = ChatCompletionRequest.model_validate(chat(top_p=0, temperature=0.7))
    assert greedy.sampling_update() == {} and greedy.effective_temperature() == 0.0  # top_p 0 is greedy


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/embeddings"), ("POST", "/v1/responses"), ("GET", "/v1/files"), ("POST", "/v1/chat/other")],
)
async def test_openai_routes_sotrag_lacks_get_a_404_in_openais_format(
    idle_client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await idle_client.request(method, path, json={"model": "sotrag-normal", "input": "hi"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


# -- against the real engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def app(engine: Any) -> AsyncIterator[Any]:
    app = create_app(SETTINGS, pipeline=SoTPipeline(engine, SETTINGS), ui=False)
    await app.state.service.start()
    yield app
    await app.state.service.stop()


@pytest.fixture(scope="module")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=300) as c:
        yield c


def sse_data(text: str) -> list[str]:
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return lines[:-1]


@pytest.mark.engine
async def test_chat_completion_is_openais_shape_and_says_length_when_cut(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=5))
    assert r.status_code == 200, r.text
    completion = ChatCompletion.model_validate_json(r.text, strict=True)
    raw = r.json()["choices"][0]
    assert raw["logprobs"] is None and raw["message"]["refusal"] is None  # present, null
    assert completion.choices[0].finish_reason == "length"  # 5 tokens cut the normal answer
    assert completion.usage is not None and completion.usage.completion_tokens == 5


@pytest.mark.engine
@pytest.mark.parametrize("model", ["sotrag-normal", "sotrag-sot"])
async def test_every_stream_chunk_is_openais_shape(client: httpx.AsyncClient, model: str) -> None:
    body = chat(model=model, stream=True, stream_options={"include_usage": True}, max_tokens=6)
    r = await client.post("/v1/chat/completions", json=body)
    data = sse_data(r.text)
    chunks = [ChatCompletionChunk.model_validate_json(d, strict=True) for d in data]
    with_choices = [json.loads(d)["choices"][0] for d in data if json.loads(d)["choices"]]
    assert all("finish_reason" in c for c in with_choices)  # null until the last, never left out
    assert [c["finish_reason"] for c in with_choices[:-1]] == [None] * (len(with_choices) - 1)
    assert with_choices[-1]["finish_reason"] == "length"  # every point (SoT) or the answer ran to 6 tokens
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all("usage" in json.loads(d) for d in data)  # null on every chunk but the last, as OpenAI's


@pytest.mark.engine
async def test_stop_is_honoured_in_normal_mode(client: httpx.AsyncClient) -> None:
    full = (await client.post("/v1/chat/completions", json=chat())).json()
    text = full["choices"][0]["message"]["content"]
    cut = next(i for i in range(len(text) // 3, len(text)) if not text[i].isspace())
    stop = text[cut:cut + 2]
    at = text.index(stop)  # its first place in the answer
    for model in ("sotrag-normal", "sotrag-auto"):
        r = await client.post("/v1/chat/completions", json=chat(model=model, stop=[stop, "never seen"]))
        stopped = r.json()
        assert stopped["choices"][0]["message"]["content"] == text[:at].strip()
        assert stopped["choices"][0]["finish_reason"] == "stop"
        assert stopped["sotrag"]["mode"] == "normal"


@pytest.mark.engine
async def test_response_format_json_schema_is_honoured(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    body = chat(max_tokens=64, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    answer = json.loads(r.json()["choices"][0]["message"]["content"])
    assert isinstance(answer, dict) and set(answer) == {"ok"} and isinstance(answer["ok"], bool)

    bad = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "no such type"}}}
    r = await client.post("/v1/chat/completions", json=chat(response_format=bad))
    assert r.status_code == 422 and "schema" in r.json()["error"]["message"], r.text
    assert r.json()["error"]["param"] == "response_format"


@pytest.mark.engine
async def test_openai_client_chat_and_completions(app: Any) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=300)
    oa = openai.AsyncOpenAI(
        base_url=f"{BASE}/v1", api_key="unused", max_retries=0, http_client=http  # type: ignore[arg-type]
    )
    completion = await oa.completions.create(model="sotrag-normal", prompt=QUESTION, max_tokens=4)
    assert Completion.model_validate(completion.model_dump(), strict=True).choices[0].finish_reason == "length"
    assert completion.choices[0].text and completion.object == "text_completion"
    stream = await oa.completions.create(model="sotrag-sot", prompt=QUESTION, stream=True)
    pieces = [chunk async for chunk in stream]
    assert all(c.object == "text_completion" for c in pieces)
    text = "".join(c.choices[0].text for c in pieces if c.choices)
    assert text.startswith("1. ") and pieces[-1].choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError) as refused:
        await oa.chat.completions.create(
            model="sotrag-normal", messages=USER, tools=[WEATHER_TOOL]  # type: ignore[arg-type, list-item]
        )
    assert refused.value.param == "tools"
    await http.aclose()


@pytest.mark.engine
async def test_langchain_chat_openai_and_bind_tools(app: Any) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=300)
    llm = ChatOpenAI(model="sotrag-normal", base_url=f"{BASE}/v1", api_key="unused", max_retries=0,  # type: ignore[arg-type, call-arg]
                     http_async_client=http, max_tokens=4)
    reply = await llm.ainvoke(QUESTION)
    assert reply.content and reply.response_metadata["finish_reason"] == "length"
    streamed = [chunk async for chunk in llm.astream(QUESTION)]
    assert "".join(str(c.content) for c in streamed) == reply.content  # greedy: the same text
    with pytest.raises(openai.BadRequestError, match="tools"):
        await llm.bind_tools([weather]).ainvoke("What is the weather in Paris?")

    class Verdict(BaseModel):
        ok: bool

    structured = llm.model_copy(update={"max_tokens": 32}).with_structured_output(Verdict, method="json_schema")
    verdict = await structured.ainvoke("Is sleep important?")  # response_format json_schema, strict
    assert isinstance(verdict, Verdict)
    await http.aclose()


@pytest.mark.engine
async def test_llamaindex_openai_like_with_its_defaults(app: Any) -> None:
    openai_like = pytest.importorskip("llama_index.llms.openai_like", reason="pip install sotrag[llamaindex]")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=300)
    llm = openai_like.OpenAILike(model="sotrag-normal", api_base=f"{BASE}/v1", api_key="unused", max_retries=0,
                                 async_http_client=http)
    assert not llm.metadata.is_chat_model  # its default: the legacy /v1/completions route
    reply = await llm.acomplete(QUESTION)
    assert reply.text
    chunks = [c async for c in await llm.astream_complete(QUESTION)]
    assert chunks and chunks[-1].text and chunks[-1].text == "".join(c.delta or "" for c in chunks)
    await http.aclose()
