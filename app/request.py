"""One typed answer request, built once by each surface (REST, the OpenAI route, the UI, the CLI, ``SoTRAG``).

Why one type: every surface used to pass the pipeline a different bag of keyword arguments, and defaults were
resolved twice (once going down, once coming back up for the response). An ``AnswerRequest`` says what the
client asked; ``resolve`` fills every default from ``Settings`` in one place; ``validate_request`` checks it
against the model once (one tokenization of the question, one of the history) and returns a
``ValidatedRequest`` that the pipeline runs without checking it again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.events import RequestedMode

# Room kept for the answer when checking that a question fits the model's context.
MIN_ANSWER_TOKENS = 32
MAX_PASSAGES_K = 50


class InvalidQuestion(ValueError):
    """The question cannot be answered as asked (empty, too long); the message is user-facing."""


class QuestionTooLong(InvalidQuestion):
    """The question (with its history) leaves no room for an answer in the model's context (413 over REST)."""

    def __init__(self, tokens: int, limit: int, *, with_history: bool = False) -> None:
        if with_history:
            message = (
                f"the question and its history are {tokens} tokens, too long for the model's context of {limit} "
                "tokens; send fewer or shorter earlier turns"
            )
        else:
            message = f"the question is {tokens} tokens, too long for the model's context of {limit} tokens"
        super().__init__(message)
        self.tokens = tokens
        self.limit = limit


class AnswerRequest(BaseModel):
    """What a client asked. ``None`` means "the server's setting" (``Settings``), resolved by ``resolve``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    mode: RequestedMode | None = Field(default=None, description="None: Settings.default_mode")
    history: tuple[tuple[str, str], ...] = Field(default=(), description="earlier (question, answer) turns")
    passages_k: int | None = Field(
        default=None, ge=0, le=MAX_PASSAGES_K, description="passages to retrieve; None: Settings.passages_k"
    )
    filters: dict[str, str] | None = None
    sampling: SamplingConfig | None = Field(default=None, description="None: Settings.sampling")
    sot: SoTConfig | None = Field(default=None, description="None: Settings.sot")

    def resolve(self, settings: Settings) -> ResolvedRequest:
        """Every default filled from ``settings``: what the answer will actually use."""
        return ResolvedRequest(
            question=self.question,
            mode=self.mode or settings.default_mode,
            history=self.history,
            passages_k=settings.passages_k if self.passages_k is None else self.passages_k,
            filters=self.filters,
            sampling=self.sampling or settings.sampling,
            sot=self.sot or settings.sot,
        )


@dataclass(frozen=True)
class ResolvedRequest:
    """An ``AnswerRequest`` with no default left open."""

    question: str
    mode: RequestedMode
    history: tuple[tuple[str, str], ...]
    passages_k: int
    filters: dict[str, str] | None
    sampling: SamplingConfig
    sot: SoTConfig


@dataclass(frozen=True)
class ValidatedRequest:
    """A resolved request whose question was checked against the model: only ``validate_request`` makes one."""

    request: ResolvedRequest
    question_tokens: int


def validation_message(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line: ``field: what is wrong`` for each error."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(dict.fromkeys(parts))


def build_request(base: AnswerRequest | None, fields: dict[str, Any]) -> AnswerRequest:
    """An ``AnswerRequest`` from ``base`` (if any) with ``fields`` over it, validated as one built with all of them
    would be (``model_copy`` checks nothing): a bad value is ``InvalidQuestion`` naming the field, before any
    work."""
    data = {**base.model_dump(), **fields} if base is not None else fields
    try:
        return AnswerRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidQuestion(validation_message(exc)) from None


def sampling_with(
    base: SamplingConfig, *, max_tokens: int | None = None, temperature: float | None = None, **fields: Any
) -> SamplingConfig | None:
    """``base`` with a client's ``max_tokens`` (per point in SoT, for the whole answer in normal decoding),
    ``temperature`` and other ``SamplingConfig`` ``fields``; None when the client set none (the request then uses
    the server's sampling)."""
    updates: dict[str, object] = dict(fields)
    if max_tokens is not None:
        updates["normal_max_tokens"] = max_tokens
        updates["point_max_tokens"] = max_tokens
        updates["point_min_tokens"] = min(base.point_min_tokens, max_tokens)
        updates["normal_min_tokens"] = min(base.normal_min_tokens, max_tokens)
    if temperature is not None:
        updates["temperature"] = temperature
    if not updates:
        return None
    try:
        return SamplingConfig.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:  # a client's value out of range (a seed past vLLM's): its 422, before any work
        raise InvalidQuestion(validation_message(exc)) from None


SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: no encoder takes it


def check_encodable(value: str, what: str = "the question", *, from_bytes: bool = False) -> str:
    """``value`` unchanged, or ``InvalidQuestion`` when it cannot be encoded (a lone surrogate: JSON's ``"\\ud800"``,
    or a byte that is not UTF-8 in a command-line argument, which Python decodes to one): no tokenizer takes it.
    ``from_bytes``: ``value`` was decoded from bytes (argv), so a surrogate there is a byte that is not UTF-8."""
    m = SURROGATE.search(value)
    if m is None:
        return value
    ch = ord(m.group())
    if from_bytes and 0xDC80 <= ch <= 0xDCFF:  # surrogateescape: the byte ch - 0xDC00 of undecodable input
        raise InvalidQuestion(f"{what} is not valid UTF-8 (byte 0x{ch - 0xDC00:x} at character {m.start()})")
    raise InvalidQuestion(f"{what} is not valid Unicode (a lone surrogate at character {m.start()})")


def check_request_text(resolved: ResolvedRequest) -> None:
    """Every text of the request (question, history, filters) encodable (``check_encodable``)."""
    check_encodable(resolved.question, "the question")
    for i, (q, a) in enumerate(resolved.history):
        check_encodable(q, f"history turn {i + 1}")
        check_encodable(a, f"history turn {i + 1}")
    for key, value in (resolved.filters or {}).items():
        check_encodable(key, "a filter name")
        check_encodable(value, f"filter {key!r}" if SURROGATE.search(key) is None else "a filter value")


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing to read: only whitespace, control and format characters (a NUL, a
    zero-width space). Such a question would reach the model as an empty one."""
    return not any(unicodedata.category(ch)[0] not in "CZ" for ch in text)


def non_empty(question: str) -> str:
    """The question stripped, or ``InvalidQuestion`` when nothing is left to read (checks no tokens)."""
    question = (question or "").strip()
    if is_blank(question):
        raise InvalidQuestion("the question is empty" + (" (no visible characters)" if question else ""))
    return question


async def validate_request(
    request: AnswerRequest | ResolvedRequest,
    settings: Settings,
    count_tokens: Callable[[str], Awaitable[int]],
    max_model_len: int,
) -> ValidatedRequest:
    """The one check of a request against the model: a question with something to read, and room for an answer
    after the question and its history. ``count_tokens`` counts plain text as the engine will encode it."""
    resolved = request.resolve(settings) if isinstance(request, AnswerRequest) else request
    check_request_text(resolved)  # before any tokenizer sees it
    question = non_empty(resolved.question)
    tokens = await count_tokens(question)
    if tokens + MIN_ANSWER_TOKENS > max_model_len:
        raise QuestionTooLong(tokens, max_model_len)
    if resolved.history:
        total = tokens + await _history_tokens(resolved.history, count_tokens)
        if total + MIN_ANSWER_TOKENS > max_model_len:
            raise QuestionTooLong(total, max_model_len, with_history=True)
    if question != resolved.question:
        resolved = _replace_question(resolved, question)
    return ValidatedRequest(resolved, tokens)


async def _history_tokens(history: Sequence[tuple[str, str]], count_tokens: Callable[[str], Awaitable[int]]) -> int:
    return sum([await count_tokens(q) + await count_tokens(a) for q, a in history])


def _replace_question(resolved: ResolvedRequest, question: str) -> ResolvedRequest:
    from dataclasses import replace

    return replace(resolved, question=question)
