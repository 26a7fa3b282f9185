"""OpenAI-compatible chat and legacy completion endpoints, so the official ``openai`` client, LangChain's
``ChatOpenAI``, LlamaIndex's ``OpenAILike`` and chat front-ends talk to sotrag unchanged.

Model names pick the decoding mode: ``sotrag-sot``, ``sotrag-normal``, ``sotrag-auto``. The last message must
be the user's question; earlier user/assistant pairs become the conversation history (sotrag keeps its own
system prompt, so client system messages are ignored). ``/v1/completions`` takes the prompt as the question.
``max_tokens`` bounds each point (SoT) or the whole answer (normal). Every parameter is honoured or refused with
a 400 naming it, never ignored: the table is in docs/service.md ("OpenAI parameters"); the protocol models are in
``openai_protocol``. Streamed chunks carry the answer in reading order (``OrderedText``): points decode in
parallel, but a chat client wants one text. Every response also carries a ``sotrag`` field with the full
result (points, sources, stats); OpenAI clients ignore unknown fields.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel

from sotrag.app.engines.json_grammar import SchemaError, check_schema, compact_json_grammar, load_xgrammar
from sotrag.app.events import AnswerDone, AnswerResult, RequestedMode
from sotrag.app.ordered import OrderedText
from sotrag.app.request import AnswerRequest
from sotrag.app.serving.api_models import AnswerResponse, sse_event_schema
from sotrag.app.serving.disconnect import run_unless_disconnected
from sotrag.app.serving.errors import AnswerFailed
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.openai_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    Completion,
    CompletionChunk,
    CompletionChunkChoice,
    CompletionRequest,
    OpenAIError,
    OpenAIErrorBody,
    finish_reason,
    needs_normal,
    openai_error,
    refused_param,
    shorten,
)
from sotrag.app.serving.service import AnswerRun, Service

__all__ = ["MODELS", "ChatMessageIn", "create_openai_router", "openai_error"]

MODELS: dict[str, RequestedMode] = {"sotrag-sot": "sot", "sotrag-normal": "normal", "sotrag-auto": "auto"}
CREATED = int(time.time())


class ModelList(BaseModel):
    object: str = "list"
    data: list[Model]


def _model_card(name: str) -> Model:
    return Model(id=name, object="model", created=CREATED, owned_by="sotrag")


def usage_of(result: AnswerResult) -> CompletionUsage:
    p = result.stats.prompt_tokens
    prompt = p.skeleton + p.points + p.normal
    tokens = result.stats.tokens
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=tokens, total_tokens=prompt + tokens)


def _json(model: BaseModel) -> JSONResponse:
    """Only the fields set (the explicit nulls OpenAI sends included: ``logprobs``, ``refusal``)."""
    return JSONResponse(model.model_dump(mode="json", exclude_unset=True))


def _sse(model: BaseModel) -> str:
    return f"data: {model.model_dump_json(exclude_unset=True)}\n\n"


def _error_line(message: str) -> str:
    return _sse(OpenAIError(error=OpenAIErrorBody(message=shorten(message), type="server_error")))


def create_openai_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["openai"])
    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": OpenAIError, "description": desc}
        for status, desc in {
            400: "the body could not be parsed, or a parameter sotrag does not honour was sent (error.param names it)",
            401: "an API key is configured and none (or a wrong one) was sent",
            403: "a cross-site request",
            404: "unknown model",
            413: "the question or history is over a limit or the model's context",
            422: "invalid request (empty question, malformed JSON, bad field or value)",
            429: "every answer slot and queue place is taken (Retry-After)",
            503: "the engine is not ready, or it stopped",
            504: "the answer ran past the server's time limit",
        }.items()
    }
    status_errors: dict[int | str, dict[str, Any]] = {k: v for k, v in error_responses.items() if k in (401, 403)}

    @router.get("/v1/models", response_model=ModelList, responses=status_errors,
                summary="The model names (one per decoding mode)")
    async def list_models() -> ModelList:
        return ModelList(data=[_model_card(name) for name in MODELS])

    @router.get(
        "/v1/models/{model_id}", response_model=Model, responses={404: error_responses[404], **status_errors},
        summary="One model",
    )
    async def get_model(model_id: str) -> Any:
        if model_id not in MODELS:
            return _unknown_model(model_id)
        return _model_card(model_id)

    async def start(
        body: ChatCompletionRequest | CompletionRequest, question: str, history: list[tuple[str, str]],
        max_tokens: int | None,
    ) -> AnswerRun | JSONResponse:
        """The answer's run, or the OpenAI error that refuses the request."""
        mode = MODELS.get(body.model)
        if mode is None:
            return _unknown_model(body.model)
        refused = refused_param(body)
        if refused is not None:
            param, why = refused
            return openai_error(400, f"unsupported parameter {param}: {why}", param=param, code="unsupported_parameter")
        normal_only = needs_normal(body)
        if normal_only is not None:
            if mode == "sot":
                return openai_error(
                    400, f"{normal_only} needs normal decoding (SoT decodes its points apart): use sotrag-normal or "
                    "sotrag-auto", param=normal_only, code="unsupported_parameter",
                )
            mode = "normal"
        update = body.sampling_update()
        schema = body.response_format.schema_for_engine() if isinstance(body, ChatCompletionRequest) and \
            body.response_format is not None else None
        if schema is not None:
            try:  # what the schema may cost, before anything is spent on it (linear, bounded by the body limit)
                check_schema(schema)
            except SchemaError as exc:
                return openai_error(422, str(exc), param="response_format", code="invalid_json_schema")
            update["json_schema"] = schema
        sampling = service.sampling_for(max_tokens=max_tokens, temperature=body.effective_temperature(), **update)
        request = AnswerRequest(question=question, mode=mode, history=tuple(history), sampling=sampling)
        run = await service.answer(request, surface="openai")  # admitted (or 429) before the schema is converted
        if schema is not None:
            unusable = await _convert_schema(schema)
            if unusable is not None:
                if run.ticket is not None:
                    run.ticket.release()
                return unusable
        return run

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
        last = body.messages[-1]
        if body.model in MODELS and last.role != "user":
            return openai_error(422, "the last message must be the user's question", param="messages")
        run = await start(body, last.text, _history(body.messages[:-1]), body.max_completion_tokens or body.max_tokens)
        if isinstance(run, JSONResponse):
            return run
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _streaming(_chat_chunks(run, service, completion_id, created, body.model, include_usage))
        result = await run_unless_disconnected(run, request)
        return _json(ChatCompletion(
            id=completion_id, object="chat.completion", created=created, model=body.model,
            choices=[Choice(
                index=0, message=ChatCompletionMessage(role="assistant", content=result.answer, refusal=None),
                finish_reason=finish_reason(result.finish_reason), logprobs=None,
            )],
            usage=usage_of(result), sotrag=service.response_for(result),
        ))

    @router.post(
        "/v1/completions",
        response_model=Completion,
        summary="OpenAI-compatible legacy completion: the prompt is the question (stream=true: text_completion "
        "chunks, then [DONE])",
        responses={
            200: {"content": {"text/event-stream": {"schema": sse_event_schema(json_data=False)}},
                  "description": "a text_completion, or with stream=true its chunks"},
            **error_responses,
        },
    )
    async def completions(body: CompletionRequest, request: Request) -> Any:
        run = await start(body, body.question, [], body.max_tokens)
        if isinstance(run, JSONResponse):
            return run
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _streaming(_completion_chunks(run, service, completion_id, created, body.model, include_usage))
        result = await run_unless_disconnected(run, request)
        return _json(Completion(
            id=completion_id, object="text_completion", created=created, model=body.model,
            choices=[CompletionChunkChoice(
                index=0, text=result.answer, logprobs=None, finish_reason=finish_reason(result.finish_reason),
            )],
            usage=usage_of(result), sotrag=service.response_for(result),
        ))

    return router


_SCHEMA_THREADS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sotrag-schema")
SCHEMA_TIMEOUT_S = 5.0  # far over what a schema within check_schema's limits takes (benchmarks/schema_cost.py)


async def _convert_schema(schema: dict[str, Any]) -> JSONResponse | None:
    """The engine's own converter, now: a schema it refuses is a 422 before any stream starts. One thread for all
    (the conversions queue there, not in the loop's shared pool), each wait bounded: a conversion past the time
    is refused, and its thread finishes alone (a thread cannot be stopped) while the limits keep that short."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(_SCHEMA_THREADS, load_xgrammar)  # once a process, not counted in the time
    try:
        await asyncio.wait_for(
            loop.run_in_executor(_SCHEMA_THREADS, compact_json_grammar, json.dumps(schema)), SCHEMA_TIMEOUT_S
        )
    except SchemaError as exc:
        return openai_error(422, str(exc), param="response_format", code="invalid_json_schema")
    except TimeoutError:
        return openai_error(422, f"the JSON schema took over {SCHEMA_TIMEOUT_S:g} s to convert; send a simpler "
                            "one", param="response_format", code="invalid_json_schema")
    return None


def _streaming(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _unknown_model(name: str) -> JSONResponse:
    return openai_error(
        404, f"the model {shorten(name, 64)!r} does not exist; use one of: {', '.join(MODELS)}", param="model",
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


async def _ordered_text(
    run: AnswerRun,
    text_chunk: Callable[[str], BaseModel],
    last_chunk: Callable[[AnswerResult], BaseModel],
    usage_chunk: Callable[[AnswerResult], BaseModel] | None,
) -> AsyncIterator[str]:
    """The answer's text in reading order as SSE chunks, then the last chunk (finish reason, sotrag's result),
    the usage chunk when asked for, and ``[DONE]``; a failure is an OpenAI error line before ``[DONE]``."""
    ordered = OrderedText()
    try:
        async for event in run.events():
            text = ordered.feed(event)
            if text:
                yield _sse(text_chunk(text))
            if isinstance(event, AnswerDone):
                yield _sse(last_chunk(event.result))
                if usage_chunk is not None:
                    yield _sse(usage_chunk(event.result))
    except (AnswerFailed, Busy) as exc:
        yield _error_line(str(exc))
    yield "data: [DONE]\n\n"


def _chat_chunks(
    run: AnswerRun, service: Service, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    usage: dict[str, Any] = {"usage": None} if include_usage else {}  # OpenAI: null on every chunk but the last

    def chunk(delta: ChoiceDelta, reason: str | None = None, sotrag: AnswerResponse | None = None) -> BaseModel:
        extra: dict[str, Any] = {"sotrag": sotrag} if sotrag is not None else {}
        return ChatCompletionChunk(
            id=completion_id, object="chat.completion.chunk", created=created, model=model, **usage, **extra,
            choices=[ChunkChoice(index=0, delta=delta, logprobs=None,
                                 finish_reason=None if reason is None else finish_reason(reason))],
        )

    async def chunks() -> AsyncIterator[str]:
        yield _sse(chunk(ChoiceDelta(role="assistant", content="", refusal=None)))
        async for line in _ordered_text(
            run,
            lambda text: chunk(ChoiceDelta(content=text)),
            lambda result: chunk(ChoiceDelta(), result.finish_reason or "stop", service.response_for(result)),
            (lambda result: ChatCompletionChunk(
                id=completion_id, object="chat.completion.chunk", created=created, model=model, choices=[],
                usage=usage_of(result),
            )) if include_usage else None,
        ):
            yield line

    return chunks()


def _completion_chunks(
    run: AnswerRun, service: Service, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    usage: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(text: str, reason: str | None = None, sotrag: AnswerResponse | None = None) -> BaseModel:
        extra: dict[str, Any] = {"sotrag": sotrag} if sotrag is not None else {}
        return CompletionChunk(
            id=completion_id, object="text_completion", created=created, model=model, **usage, **extra,
            choices=[CompletionChunkChoice(index=0, text=text, logprobs=None,
                                           finish_reason=None if reason is None else finish_reason(reason))],
        )

    return _ordered_text(
        run,
        chunk,
        lambda result: chunk("", result.finish_reason or "stop", service.response_for(result)),
        (lambda result: CompletionChunk(
            id=completion_id, object="text_completion", created=created, model=model, choices=[],
            usage=usage_of(result),
        )) if include_usage else None,
    )
