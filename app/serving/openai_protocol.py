"""The OpenAI protocol as sotrag speaks it: request models with OpenAI's fields and ranges, response models that
are the ``openai`` package's own types (plus a ``sotrag`` field), and OpenAI's error body.

Kept apart from the routes (``openai_api``), as vLLM keeps its protocol models apart from its server. Which
request parameters are honoured and which are refused, per mode, is in docs/service.md ("OpenAI parameters");
``refused_param`` is that table's refusing half.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from openai.types import Completion as _Completion
from openai.types import CompletionChoice as _CompletionChoice
from openai.types.chat import ChatCompletion as _ChatCompletion
from openai.types.chat import ChatCompletionChunk as _ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from sotrag.app.config import SEED_MAX, SEED_MIN
from sotrag.app.serving.api_models import AnswerResponse
from sotrag.app.serving.validation import JSONNumber, UnicodeText

# -- errors ---------------------------------------------------------------------------------------------------


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


ERROR_TYPES = {
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


MAX_ERROR_CHARS = 500  # an error's message: enough for every one, not for echoing a client's megabyte back
MAX_PARAM_CHARS = 64


def shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters: every echo of a client's value in an error goes through here."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    """OpenAI's error body. The message and param are cut short here, so no caller can echo a client's value
    whole (a 1 MB model name is not sent back)."""
    body = OpenAIError(error=OpenAIErrorBody(
        message=shorten(message), type=ERROR_TYPES.get(status, "server_error"),
        param=None if param is None else shorten(param, MAX_PARAM_CHARS), code=code,
    ))
    return JSONResponse(body.model_dump(), status_code=status)


# -- requests -------------------------------------------------------------------------------------------------

Number = JSONNumber  # OpenAI's "number": 1 and 1.0, never "1" or true
StopText = Annotated[StrictStr, Field(min_length=1)]
Stop = StopText | Annotated[list[StopText], Field(max_length=4)]  # up to 4 sequences, as OpenAI allows


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: UnicodeText | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: UnicodeText | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """``text``, ``json_object`` (any JSON object) or ``json_schema`` (JSON matching ``json_schema.schema``)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    def schema_for_engine(self) -> dict[str, Any] | None:
        """The JSON schema vLLM's structured outputs get, or None for plain text."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            schema = self.json_schema.schema_ if self.json_schema is not None else None
            return schema or {"type": "object"}
        return None


class _Sampling(BaseModel):
    """The sampling fields both endpoints share, with OpenAI's ranges."""

    # Unknown fields are kept (not dropped) so that ``refused_param`` can refuse them by name: never ignored.
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="sotrag-sot, sotrag-normal or sotrag-auto")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=32768)
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Number | None = Field(default=None, ge=0.0, le=1.0)
    n: StrictInt = Field(default=1, ge=1, le=1, description="only 1 is supported")
    stop: Stop | None = Field(default=None, description="normal mode only: the answer ends before the first")
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX, description="best effort, as OpenAI's")
    presence_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[Number, Field(ge=-100, le=100)]] | None = None
    user: StrictStr | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def effective_temperature(self) -> float | None:
        """The temperature to sample with: ``top_p`` 0 (OpenAI allows it: only the likeliest token) is greedy,
        whatever the temperature, since vLLM wants a top_p over 0."""
        if self.top_p is not None and self.top_p == 0:
            return 0.0
        return None if self.temperature is None else float(self.temperature)

    def sampling_update(self) -> dict[str, Any]:
        """The ``SamplingConfig`` fields this request sets besides temperature (``effective_temperature``) and
        max_tokens, which ``Service.sampling_for`` takes as their own arguments."""
        update: dict[str, Any] = {}
        if self.top_p is not None and self.top_p != 0:
            update["top_p"] = float(self.top_p)
        if self.seed is not None:
            update["seed"] = self.seed
        if self.stop is not None:
            update["stop"] = self.stop_list()
        return update


class ChatCompletionRequest(_Sampling):
    """OpenAI's chat completion request. Fields it refuses (tools, logprobs, ...): ``refused_param``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=32768)
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: StrictStr | dict[str, Any] | None = None
    modalities: list[StrictStr] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: StrictBool | None = None
    # Accepted at their neutral values only (``refused_param``): the rest would change an answer sotrag cannot.
    reasoning_effort: StrictStr | None = None
    verbosity: StrictStr | None = None
    service_tier: StrictStr | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: StrictStr | None = None
    safety_identifier: StrictStr | None = None


class CompletionRequest(_Sampling):
    """OpenAI's legacy completion request: the prompt is the question."""

    prompt: UnicodeText | Annotated[list[UnicodeText], Field(min_length=1, max_length=1)] = Field(
        description="the question (one string; a list of one string is accepted)"
    )
    logprobs: StrictInt | None = Field(default=None, ge=0, le=5)
    echo: StrictBool | None = None
    best_of: StrictInt | None = Field(default=None, ge=1, le=20)
    suffix: str | None = None

    @property
    def question(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


NOT_SUPPORTED = "sotrag answers questions from your documents as text"


def refused_param(body: _Sampling) -> tuple[str, str] | None:
    """The first parameter sotrag cannot honour as asked, with why; None when every one can be. Defaults and
    neutral values (``tool_choice: "none"``, ``logprobs: false``, penalties of 0) are accepted."""
    unknown = next(iter(body.model_extra or {}), None)
    if unknown is not None:
        return shorten(unknown, MAX_PARAM_CHARS), "sotrag does not know it (docs/service.md lists what it takes)"
    refusals: list[tuple[str, bool, str]] = [
        ("presence_penalty", bool(body.presence_penalty), "penalties are not supported; send 0 or leave it out"),
        ("frequency_penalty", bool(body.frequency_penalty), "penalties are not supported; send 0 or leave it out"),
        ("logit_bias", bool(body.logit_bias), "logit_bias is not supported"),
    ]
    if isinstance(body, ChatCompletionRequest):
        refusals += [
            ("tools", bool(body.tools), f"tools are not supported: {NOT_SUPPORTED}, it calls no tools"),
            ("tool_choice", body.tool_choice not in (None, "none", "auto"), "tool_choice: sotrag calls no tools"),
            ("functions", bool(body.functions), f"functions are not supported: {NOT_SUPPORTED}"),
            ("function_call", body.function_call not in (None, "none", "auto"), "function_call is not supported"),
            ("logprobs", bool(body.logprobs), "logprobs are not supported"),
            ("top_logprobs", bool(body.top_logprobs), "top_logprobs are not supported"),
            ("modalities", body.modalities not in (None, ["text"]), "only the text modality is supported"),
            ("audio", body.audio is not None, "audio output is not supported"),
            ("prediction", body.prediction is not None, "predicted outputs are not supported"),
            ("store", bool(body.store), "sotrag stores no completions; send false or leave it out"),
            ("reasoning_effort", body.reasoning_effort is not None, "sotrag's models are not reasoning models"),
            ("verbosity", body.verbosity not in (None, "medium"), "only the default, medium, is supported"),
            ("service_tier", body.service_tier not in (None, "auto", "default"),
             "sotrag has one service tier; send auto or default, or leave it out"),
            ("web_search_options", body.web_search_options is not None,
             f"web search is not supported: {NOT_SUPPORTED}"),
            ("moderation", body.moderation is not None, "moderation is not supported"),
            ("prompt_cache_options", bool(body.prompt_cache_options),
             "cache breakpoints are not supported (vLLM's prefix cache is automatic); leave it out"),
            ("prompt_cache_retention", body.prompt_cache_retention not in (None, "in_memory"),
             "the prefix cache lives in memory only; send in_memory or leave it out"),
        ]
        part = non_text_part(body.messages)
        if part is not None:
            refusals.append(("messages", True, f"content parts of type {part!r} are not supported: {NOT_SUPPORTED}; "
                             "send text parts only"))
    if isinstance(body, CompletionRequest):
        refusals += [
            ("logprobs", bool(body.logprobs), "logprobs are not supported"),
            ("echo", bool(body.echo), "echo is not supported"),
            ("best_of", (body.best_of or 1) > 1, "best_of is not supported; only 1"),
            ("suffix", bool(body.suffix), "suffix (insertion) is not supported"),
        ]
    return next(((param, why) for param, refused, why in refusals if refused), None)


def non_text_part(messages: list[ChatMessageIn]) -> str | None:
    """The type of the first content part that is not text (an image, audio, a file), or None: such a part would
    otherwise be dropped without a word, and an answer given as if it had not been sent."""
    for message in messages:
        if isinstance(message.content, list):
            for part in message.content:
                if part.type != "text":
                    return part.type[:64]
    return None


def needs_normal(body: _Sampling) -> str | None:
    """A parameter that only a normal (one-request) answer can honour, or None: SoT's points decode apart, so a
    stop string or a JSON shape cannot hold for the assembled text."""
    if body.stop is not None and body.stop_list():
        return "stop"
    if isinstance(body, ChatCompletionRequest) and body.response_format and body.response_format.type != "text":
        return "response_format"
    return None


# -- responses: the openai package's types, with sotrag's result added -----------------------------------------


class ChatCompletion(_ChatCompletion):
    sotrag: AnswerResponse = Field(description="sotrag's full result: points, sources, stats")


class ChatCompletionChunk(_ChatCompletionChunk):
    sotrag: AnswerResponse | None = Field(default=None, description="on the last content chunk: the full result")


class Completion(_Completion):
    sotrag: AnswerResponse = Field(description="sotrag's full result: points, sources, stats")


class CompletionChunkChoice(_CompletionChoice):
    finish_reason: Literal["stop", "length", "content_filter"] | None = None  # type: ignore[assignment]


class CompletionChunk(_Completion):
    """A streamed legacy completion: OpenAI streams ``text_completion`` objects whose ``finish_reason`` is null
    until the last."""

    choices: list[CompletionChunkChoice]  # type: ignore[assignment]
    sotrag: AnswerResponse | None = Field(default=None, description="on the last chunk: the full result")


def finish_reason(reason: str | None) -> Literal["stop", "length"]:
    """OpenAI's finish reason for an engine's: ``length`` when a token limit cut the answer, else ``stop``."""
    return "length" if reason == "length" else "stop"
