"""The engine interface the SoT pipeline talks to.

``Engine`` is what every engine must have: its model's name and context length, chat prompts (``render_chat``,
``encode_chat``, ``count_tokens``), one request's token stream (``generate``), ``abort``, its ``load`` and
``aclose``. ``EngineBase`` declares the optional capabilities, with the defaults of a local engine (alive,
tokenizing in place, no request count, no servers); an engine inherits it and overrides what it knows better,
so callers call them instead of probing for them. Keeping the interface this small is what lets the pipeline
run on vLLM (``VLLMEngine``), on remote vLLM servers (``RemoteEngine``) and on a scripted engine in unit tests.

Prompts travel as token ids (``encode_chat`` -> ``GenerationRequest.prompt_token_ids``) for two reasons:
only the chat template may produce special tokens (text from documents, questions and history never does,
see ``sotrag.app.engines.chat_ids``), and a point request can continue from the skeleton request's own ids
(its prompt ids, then the ids it generated, ``GenerationDelta.token_ids``), which is what vLLM's prefix
cache matches on.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
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
    """What the SoT pipeline needs from every inference engine (the optional rest: ``EngineBase``)."""

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


class EngineBase(Engine):
    """An ``Engine`` with the optional capabilities declared, each with the default of a local engine.

    Inherit it and override what the engine knows better: ``health`` (vLLM's engine-core process can die),
    ``aencode_chat``/``acount_tokens`` (an engine that tokenizes through a server must not block the event loop),
    ``num_unfinished_requests`` (vLLM and a remote engine know theirs), ``servers`` (a remote engine's servers,
    for ``/readyz``), ``generate_group`` (in-process vLLM hands a group of requests to its core at once). An
    engine that only satisfies the ``Engine`` protocol gets these defaults (``with_defaults``)."""

    def health(self) -> EngineHealth | bool | Awaitable[EngineHealth | bool]:
        """Whether the engine can still serve (sync or async, an ``EngineHealth`` or a bool): alive by default."""
        return EngineHealth(alive=True)

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        """``encode_chat`` for the event loop; in place by default (a local tokenizer is CPU-only, no I/O)."""
        return self.encode_chat(messages, continue_final_message=continue_final_message)

    async def acount_tokens(self, text: str) -> int:
        """``count_tokens`` for the event loop; in place by default."""
        return self.count_tokens(text)

    def num_unfinished_requests(self) -> int | None:
        """Requests the engine still holds (running or waiting); None when it cannot tell."""
        return None

    async def generate_group(self, requests: Sequence[GenerationRequest]) -> list[AsyncIterator[GenerationDelta]]:
        """One stream per request of a group that should start decoding together (an answer's points). By
        default each request starts when its stream is first read; an engine that can hand a group over at once
        (``VLLMEngine``) overrides this. Every stream must be read to its end or closed: closing aborts it."""
        return [self.generate(request) for request in requests]

    def servers(self) -> list[dict[str, object]] | None:
        """Each server the engine sends to, up or down (for ``/readyz``); None for an engine without servers."""
        return None


class _Defaults(EngineBase):
    """``EngineBase``'s defaults over an engine that only satisfies the ``Engine`` protocol."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return self._engine.render_chat(messages, continue_final_message=continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        return self._engine.encode_chat(messages, continue_final_message=continue_final_message)

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        return self._engine.generate(request)

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    def load(self) -> EngineLoad:
        return self._engine.load()

    async def aclose(self) -> None:
        await self._engine.aclose()


def with_defaults(engine: Engine) -> EngineBase:
    """``engine`` with its optional capabilities: itself when it inherits ``EngineBase``, else the defaults."""
    return engine if isinstance(engine, EngineBase) else _Defaults(engine)


async def engine_health(engine: Engine) -> EngineHealth:
    """The engine's ``health()`` (sync or async) as an ``EngineHealth``.

    A health check that raises is itself the sign of a broken engine, so it reads as dead, with a user-facing reason.
    """
    try:
        result = with_defaults(engine).health()
        if inspect.isawaitable(result):
            result = await result
    except Exception:
        return EngineHealth(alive=False, detail="the engine does not answer its health check")
    if isinstance(result, EngineHealth):
        return result
    return EngineHealth(alive=bool(result), detail=None if result else "the engine reports it is not healthy")


async def encode_chat_async(
    engine: Engine, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
) -> ChatPrompt:
    """``engine.encode_chat`` without blocking the event loop: through the engine's ``aencode_chat``.

    An engine whose tokenizer is local (in-process vLLM, a remote engine with the model's tokenizer on disk, a
    test fake) encodes in place; one that tokenizes through a server (``RemoteEngine`` without a local tokenizer)
    makes HTTP round trips, which must not stall every other answer on the loop.
    """
    return await with_defaults(engine).aencode_chat(messages, continue_final_message=continue_final_message)


async def count_tokens_async(engine: Engine, text: str) -> int:
    """``engine.count_tokens`` through the engine's ``acount_tokens`` (see ``encode_chat_async``)."""
    return int(await with_defaults(engine).acount_tokens(text))


_URL = re.compile(r"\s*\bhttps?://[^\s,;)'\"]*[^\s,;)'\":.]")  # a URL, not the colon or stop after it


class EngineError(RuntimeError):
    """An engine could not be created or could not serve a request; the message is user-facing for the operator
    (the CLI prints it, the log keeps it). ``public`` is the same without internal server URLs, for API clients;
    ``status`` is the HTTP status an answer that failed with it gets (500: the server's fault)."""

    status = 500
    default_public: str | None = None  # a class's one public message, whatever the operator's message says

    def __init__(self, *args: object, public: str | None = None) -> None:
        super().__init__(*args)
        self._public = public

    @property
    def public(self) -> str:
        """One line an API client may see: the ``public`` given (an error that quotes another server's answer
        gives one, so that text never reaches a client), else the class's, else the message without server URLs
        (a client must not learn the topology)."""
        given = getattr(self, "_public", None) or self.default_public
        if given:
            return given
        lines = str(self).strip().splitlines()
        return _URL.sub("", lines[0] if lines else type(self).__name__)


class EngineRejected(EngineError):
    """A vLLM server refused a request for one of its values (its HTTP 400: a bad parameter, a JSON schema its
    grammar compiler rejects): the client's mistake, so the client's 4xx. ``param``: the refused parameter
    where the server named it."""

    status = 422

    def __init__(self, message: str, *, param: str | None = None, public: str | None = None) -> None:
        super().__init__(message, public=public)
        self.param = param


class EngineUnavailable(EngineError):
    """No vLLM server can take the request now (all down or unreachable): 503, worth retrying later."""

    status = 503
    default_public = "no vLLM server is up or free to take the request now; try again shortly"
