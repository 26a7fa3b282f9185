"""An OpenAI-compatible chat endpoint, so the official ``openai`` client, LangChain's ``ChatOpenAI`` and chat
front-ends talk to sotrag unchanged.

Model names pick the decoding mode: ``sotrag-sot``, ``sotrag-normal``, ``sotrag-auto``. The last message must
be the user's question; earlier user/assistant pairs become the conversation history (sotrag keeps its own
system prompt, so client system messages are ignored). ``max_tokens`` bounds each point (SoT) or the whole
answer (normal). Streamed chunks carry the answer in reading order (``OrderedText``): points decode in
parallel, but a chat client wants one text. Every response also carries a ``sotrag`` field with the full
result (points, sources, stats); OpenAI clients ignore unknown fields.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sotrag.app.events import AnswerDone, AnswerResult, RequestedMode
from sotrag.app.ordered import OrderedText
from sotrag.app.request import AnswerRequest
from sotrag.app.serving.api_models import AnswerResponse, sse_event_schema
from sotrag.app.serving.disconnect import run_unless_disconnected
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.service import AnswerFailed, AnswerRun, Service
from sotrag.app.serving.validation import UnicodeText

MODELS: dict[str, RequestedMode] = {"sotrag-sot": "sot", "sotrag-normal": "normal", "sotrag-auto": "auto"}
CREATED = int(time.time())


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    503: "service_unavailable",
}


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = OpenAIError(error=OpenAIErrorBody(message=message, type=_ERROR_TYPES.get(status, "server_error"),
                                             param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: UnicodeText | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: UnicodeText | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields sotrag uses; other OpenAI fields (presence_penalty, user, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="sotrag-sot, sotrag-normal or sotrag-auto")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=1, description="only 1 is supported")
    stream_options: StreamOptions | None = None


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sotrag: AnswerResponse = Field(description="sotrag's full result: points, sources, stats")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    sotrag: AnswerResponse | None = Field(default=None, description="on the last content chunk: the full result")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str = "sotrag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def usage_of(result: AnswerResult) -> Usage:
    p = result.stats.prompt_tokens
    prompt = p.skeleton + p.points + p.normal
    return Usage(prompt_tokens=prompt, completion_tokens=result.stats.tokens, total_tokens=prompt + result.stats.tokens)


def finish_reason_of(result: AnswerResult) -> Literal["stop", "length"]:
    """``length`` when a point hit its token limit (the result keeps no finish reason for normal decoding)."""
    return "length" if any(p.finish_reason == "length" for p in result.points) else "stop"


def _error_line(message: str) -> str:
    body = OpenAIError(error=OpenAIErrorBody(message=message, type="server_error"))
    return f"data: {body.model_dump_json()}\n\n"


def create_openai_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["openai"])
    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": OpenAIError, "description": desc}
        for status, desc in {
            400: "the body could not be parsed",
            401: "an API key is configured and none (or a wrong one) was sent",
            403: "a cross-site request",
            404: "unknown model",
            413: "the question or history is over a limit or the model's context",
            422: "invalid request (empty question, malformed JSON, bad field)",
            429: "every answer slot and queue place is taken (Retry-After)",
            503: "the engine is not ready, or it stopped",
            504: "the answer ran past the server's time limit",
        }.items()
    }

    status_errors: dict[int | str, dict[str, Any]] = {k: v for k, v in error_responses.items() if k in (401, 403)}

    @router.get("/v1/models", response_model=ModelList, responses=status_errors,
                summary="The model names (one per decoding mode)")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=name) for name in MODELS])

    @router.get(
        "/v1/models/{model_id}", response_model=ModelCard, responses={404: error_responses[404], **status_errors},
        summary="One model",
    )
    async def get_model(model_id: str) -> Any:
        if model_id not in MODELS:
            return _unknown_model(model_id)
        return ModelCard(id=model_id)

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        summary="OpenAI-compatible chat completion (stream=true: chat.completion.chunk events, then [DONE])",
        responses={
            200: {"content": {"text/event-stream": {"schema": sse_event_schema(json_data=False)}},
                  "description": "a chat.completion, or with stream=true ChatCompletionChunk events"},
            **error_responses,
        },
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        mode = MODELS.get(body.model)
        if mode is None:
            return _unknown_model(body.model)
        last = body.messages[-1]
        if last.role != "user":
            return openai_error(422, "the last message must be the user's question", param="messages")
        history = _history(body.messages[:-1])
        sampling = service.sampling_for(
            max_tokens=body.max_completion_tokens or body.max_tokens, temperature=body.temperature
        )
        answer_request = AnswerRequest(question=last.text, mode=mode, history=tuple(history), sampling=sampling)
        run = await service.answer(answer_request, surface="openai")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _chunks(run, service, completion_id, created, body.model, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result = await run_unless_disconnected(run, request)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[Choice(message=ChatMessageOut(content=result.answer), finish_reason=finish_reason_of(result))],
            usage=usage_of(result),
            sotrag=service.response_for(result),
        )

    return router


def _unknown_model(name: str) -> JSONResponse:
    return openai_error(
        404, f"the model {name!r} does not exist; use one of: {', '.join(MODELS)}", param="model",
        code="model_not_found",
    )


def _history(messages: list[ChatMessageIn]) -> list[tuple[str, str]]:
    """Pair each user message with the assistant reply that follows it; system/tool messages are skipped."""
    turns: list[tuple[str, str]] = []
    pending: str | None = None
    for m in messages:
        if m.role == "user":
            pending = m.text
        elif m.role == "assistant" and pending is not None:
            turns.append((pending, m.text))
            pending = None
    return turns


async def _chunks(
    run: AnswerRun, service: Service, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: Delta, finish: Literal["stop", "length"] | None = None, **extra: Any) -> str:
        c = ChatCompletionChunk(
            id=completion_id, created=created, model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)], **extra,
        )
        return f"data: {c.model_dump_json(exclude_none=True)}\n\n"

    ordered = OrderedText()
    yield chunk(Delta(role="assistant", content=""))
    try:
        async for event in run.events():
            text = ordered.feed(event)
            if text:
                yield chunk(Delta(content=text))
            if isinstance(event, AnswerDone):
                result = event.result
                yield chunk(Delta(), finish_reason_of(result), sotrag=service.response_for(result))
                if include_usage:
                    usage = ChatCompletionChunk(
                        id=completion_id, created=created, model=model, choices=[], usage=usage_of(result)
                    )
                    yield f"data: {usage.model_dump_json(exclude_none=True)}\n\n"
    except (AnswerFailed, Busy) as exc:
        yield _error_line(str(exc))
    yield "data: [DONE]\n\n"
