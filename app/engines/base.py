"""The engine interface the SoT pipeline talks to.

The pipeline needs exactly four things from an LLM engine: turn chat messages into a prompt, stream one
request's token deltas, abort a request, and say how busy it is. Keeping the interface this small is what
lets the pipeline run on vLLM (``VLLMEngine``) in production and on a scripted engine in unit tests.
"""

from __future__ import annotations

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


class EngineError(RuntimeError):
    """An engine could not be created or could not serve a request; the message is user-facing."""
