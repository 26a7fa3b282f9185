"""The engine interface the SoT pipeline talks to.

The pipeline needs exactly four things from an LLM engine: turn chat messages into a prompt, stream one
request's token deltas, abort a request, and say how busy it is. Keeping the interface this small is what
lets the pipeline run on vLLM (``VLLMEngine``) in production and on a scripted engine in unit tests.
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
    min_tokens: int = 0
    ignore_eos: bool = False
    allowed_token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt: str  # already chat-templated text
    sampling: SamplingOptions = field(default_factory=SamplingOptions)


@dataclass(frozen=True)
class GenerationDelta:
    """One streamed step of a request: the new text and how many new tokens it holds.

    ``prompt_tokens`` and ``cached_prompt_tokens`` are filled on every delta (vLLM reports them on every
    output); ``finish_reason`` is set on the last one only.
    """

    text: str
    new_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int
    finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True)
class EngineLoad:
    """A snapshot of how busy the engine is, for load-aware routing."""

    running: int
    waiting: int
    max_num_seqs: int
    kv_cache_usage: float  # 0..1


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

    def count_tokens(self, text: str) -> int: ...

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


class EngineError(RuntimeError):
    """An engine could not be created or could not serve a request; the message is user-facing."""
