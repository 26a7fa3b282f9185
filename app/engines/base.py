"""The engine interface the SoT pipeline talks to.

The pipeline needs exactly four things from an LLM engine: turn chat messages into a prompt, stream one
request's token deltas, abort a request, and say how busy it is. Keeping the interface this small is what
lets the pipeline run on vLLM (``VLLMEngine``) in production and on a scripted engine in unit tests.

Prompts travel as token ids (``encode_chat`` -> ``GenerationRequest.prompt_token_ids``) for two reasons:
only the chat template may produce special tokens (text from documents, questions and history never does,
see ``sotrag.app.engines.chat_ids``), and a point request can continue from the skeleton request's own ids
(its prompt ids, then the ids it generated, ``GenerationDelta.token_ids``), which is what vLLM's prefix
cache matches on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sotrag.prompts.messages import ChatMessage


@dataclass(frozen=True)
class SamplingOptions:
    """Per-request sampling. Mirrors the subset of vLLM's ``SamplingParams`` the pipeline uses."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled
    seed: int | None = None
    stop: tuple[str, ...] = ()
    regex: str | None = None  # structured output: the whole completion must match
    json_schema: str | None = None  # structured output: the completion is JSON matching this schema (JSON text)
    min_tokens: int = 0
    ignore_eos: bool = False
    allowed_token_ids: tuple[int, ...] | None = None
    stream_interval: int = 1  # tokens per streamed delta (the first and the last come at once)


@dataclass(frozen=True)
class ChatPrompt:
    """A chat prompt as the engine will submit it (``Engine.encode_chat``).

    ``token_ids`` are the chat template's own pieces encoded with special tokens, and each message's content
    encoded as plain text, so that no special token can come from content. ``text`` is the same prompt as
    text (logs, length checks). ``token_spans``/``text_spans`` give, per rendered message, where its content
    lies in ``token_ids``/``text`` (``[start, end)``), or ``None`` where the template did not render that
    content exactly once. A template without a system role gets the system text merged into the next
    message, so there is then one span fewer than messages: index spans from the end when that matters.
    """

    text: str
    token_ids: tuple[int, ...]
    token_spans: tuple[tuple[int, int] | None, ...] = ()
    text_spans: tuple[tuple[int, int] | None, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """One engine request.

    ``prompt_token_ids``, when set, are submitted exactly as they are (build them with ``encode_chat``, or
    continue them from an earlier request's prompt and generated ids); ``prompt`` then only serves logs and
    length checks. Without ids the engine encodes ``prompt`` as plain text: special-token markers written in
    it stay text, they never become special tokens.
    """

    request_id: str
    prompt: str
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    prompt_token_ids: tuple[int, ...] | None = None
    # Which answer the request belongs to: an engine over several servers sends all requests with one key to
    # one server, so they share its prefix cache. None: no affinity.
    affinity: str | None = None


@dataclass(frozen=True)
class GenerationDelta:
    """One streamed step of a request: the new text and how many new tokens it holds.

    ``prompt_tokens`` and ``cached_prompt_tokens`` are filled on every delta (vLLM reports them on every
    output); ``finish_reason`` is set on the last one only. ``token_ids`` are the delta's new token ids
    without special tokens (as ``text`` is without them: an EOS that ends the request is left out), so a
    later prompt can continue from exactly the tokens the model wrote. An engine that cannot report ids
    leaves it empty; the pipeline then re-encodes the text (correct, but no prefix-cache hit on it).
    """

    text: str
    new_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int
    finish_reason: str | None = None
    token_ids: tuple[int, ...] = ()

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class EngineLoad:
    """A snapshot of how busy the engine is, for load-aware routing.

    Every field is one vLLM also exports on ``/metrics`` (so a remote engine can fill it): ``running`` and
    ``waiting`` (``vllm:num_requests_running`` / ``_waiting``), ``kv_cache_usage``
    (``vllm:kv_cache_usage_perc``), ``itl_s`` (``vllm:inter_token_latency_seconds``, recent), and
    ``tokens_per_step`` (``vllm:iteration_tokens_total``). ``idle_itl_s`` is the engine's own ITL when
    lightly loaded, the baseline ``itl_s`` is compared with. Unknown values stay None.
    """

    running: int
    waiting: int
    max_num_seqs: int
    kv_cache_usage: float  # 0..1
    itl_s: float | None = None  # recent inter-token latency (median over the last engine steps)
    idle_itl_s: float | None = None  # the lowest such median seen: the ITL of a lightly loaded engine
    tokens_per_step: float | None = None  # recent tokens (prompt + generated) per engine step

    @property
    def itl_ratio(self) -> float | None:
        """Recent ITL over the idle ITL (1.0 = no slowdown); 1.0 when nothing runs, None when unknown."""
        if self.running == 0 and self.waiting == 0:
            return 1.0
        if self.itl_s is None or not self.idle_itl_s:
            return None
        return self.itl_s / self.idle_itl_s


@dataclass(frozen=True)
class EngineHealth:
    """Whether an engine can still serve; ``detail`` is a user-facing reason when it cannot."""

    alive: bool
    detail: str | None = None


@runtime_checkable
class Engine(Protocol):
    """What the SoT pipeline needs from an inference engine."""

    @property
    def model_name(self) -> str: ...

    @property
    def max_model_len(self) -> int: ...

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        """Apply the model's chat template. With ``continue_final_message`` the last (assistant)
        message stays open so the model continues it."""
        ...

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        """The prompt of ``render_chat`` as token ids in which only the template makes special tokens: message
        content is encoded as plain text (``sotrag.app.engines.chat_ids.encode_chat`` does it for any
        Hugging Face tokenizer). Every request the pipeline sends is built with it."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` encoded as plain text (as message content is)."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas of one request. Closing the iterator early must abort the request."""
        ...

    async def abort(self, request_id: str) -> None: ...

    def load(self) -> EngineLoad: ...

    async def aclose(self) -> None: ...


async def engine_health(engine: Engine) -> EngineHealth:
    """The engine's health from its optional ``health()`` (sync or async); an engine without one is alive.

    ``health()`` is optional so that any engine (in-process vLLM, a remote server, a test fake) can say when it can
    no longer serve, without every engine having to implement it.
    """
    check = getattr(engine, "health", None)
    if not callable(check):
        return EngineHealth(alive=True)
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await result
    except Exception:  # a health check that breaks is itself a sign of a broken engine
        return EngineHealth(alive=False, detail="the engine does not answer its health check")
    if isinstance(result, EngineHealth):
        return result
    return EngineHealth(alive=bool(result), detail=None if result else "the engine reports it is not healthy")


async def encode_chat_async(
    engine: Engine, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
) -> ChatPrompt:
    """``engine.encode_chat`` without blocking the event loop: through the engine's optional ``aencode_chat``.

    Optional like ``health()``: an engine whose tokenizer is local (in-process vLLM, a remote engine with the
    model's tokenizer on disk, a test fake) encodes in microseconds to a few ms of CPU and needs none; one that
    tokenizes through a server (``RemoteEngine`` without a local tokenizer) makes HTTP round trips, which must
    not stall every other answer on the loop.
    """
    encode = getattr(engine, "aencode_chat", None)
    if callable(encode):
        prompt: ChatPrompt = await encode(messages, continue_final_message=continue_final_message)
        return prompt
    return engine.encode_chat(messages, continue_final_message=continue_final_message)


async def count_tokens_async(engine: Engine, text: str) -> int:
    """``engine.count_tokens`` through the engine's optional ``acount_tokens`` (see ``encode_chat_async``)."""
    count = getattr(engine, "acount_tokens", None)
    if callable(count):
        return int(await count(text))
    return engine.count_tokens(text)


class EngineError(RuntimeError):
    """An engine could not be created or could not serve a request; the message is user-facing."""
