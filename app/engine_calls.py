"""The engine requests of one answer: how they are named, built, run, traced and aborted.

One ``EngineCalls`` per answer. Every request it sends carries the answer's affinity key (an engine over several
servers keeps one answer on one server, and so on one prefix cache), and every request still running when the
answer ends is aborted through it: closing an answer can never leave work behind on the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Protocol

from sotrag.app.config import SamplingConfig
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    Engine,
    GenerationDelta,
    GenerationRequest,
    SamplingOptions,
    encode_chat_async,
    with_defaults,
)


@dataclass
class RequestTrace:
    """What one engine request did, in seconds from the start of the answer."""

    start_s: float
    first_token_s: float | None = None
    end_s: float | None = None
    text: str = ""
    tokens: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    finish_reason: str | None = None
    prompt_token_ids: tuple[int, ...] = ()
    token_ids: list[int] = field(default_factory=list)  # generated, without special tokens


class TextEnd(Protocol):
    """Where a request's text ends, found in its stream (``point_end.PointEnd``): what stop strings cannot say."""

    def feed(self, delta: str) -> tuple[str, bool]:
        """The part of ``delta`` that belongs to the text, and whether the text ended in it."""
        ...

    def finish(self) -> str:
        """What was held back, once the request has finished."""
        ...


class EngineCalls:
    """The answer's clock, its sampling, and every engine request it has in flight."""

    def __init__(self, engine: Engine, sampling: SamplingConfig) -> None:
        self.engine = engine
        self.sampling = sampling
        self.answer_id = uuid.uuid4().hex[:12]
        self.t0 = perf_counter()
        self._in_flight: set[str] = set()
        self._ends: dict[str, TextEnd] = {}
        self._ids: set[str] = set()

    def now(self) -> float:
        """Seconds since the answer started."""
        return perf_counter() - self.t0

    def request_id(self, stage: str) -> str:
        """A request id no earlier request of this answer had: a point restarted after a withdrawal would otherwise
        reuse an aborted request's id ("sotrag-A-point1", then "sotrag-A.2-point1": the stage stays the last part)."""
        rid, n = f"sotrag-{self.answer_id}-{stage}", 1
        while rid in self._ids:
            n += 1
            rid = f"sotrag-{self.answer_id}.{n}-{stage}"
        self._ids.add(rid)
        return rid

    def end_with(self, request_id: str, end: TextEnd) -> None:
        """Cut request ``request_id``'s stream where ``end`` says its text ends: the last delta is cut there and
        finishes with ``stop``, and the request is aborted (as closing its stream does)."""
        self._ends[request_id] = end

    def options(
        self,
        max_tokens: int,
        *,
        min_tokens: int = 0,
        stop: tuple[str, ...] = (),
        regex: str | None = None,
        json_schema: str | None = None,
        stream_interval: int = 1,
    ) -> SamplingOptions:
        """One request's sampling: the answer's settings, with this stage's length, stops and guide."""
        s = self.sampling
        return SamplingOptions(
            max_tokens=max_tokens,
            min_tokens=min(min_tokens, max_tokens),
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            seed=s.seed,
            stop=stop,
            regex=regex,
            json_schema=json_schema,
            ignore_eos=s.ignore_eos,
            allowed_token_ids=tuple(s.allowed_token_ids) if s.allowed_token_ids else None,
            stream_interval=stream_interval,
        )

    async def chat_request(
        self, stage: str, messages: Sequence[ChatMessage], options: SamplingOptions
    ) -> GenerationRequest:
        """A request whose token ids the engine built from ``messages`` (no special token from their text)."""
        prompt: ChatPrompt = await encode_chat_async(self.engine, messages)
        return GenerationRequest(self.request_id(stage), prompt.text, options, prompt_token_ids=prompt.token_ids)

    async def generate(
        self, request: GenerationRequest, trace: RequestTrace
    ) -> AsyncGenerator[GenerationDelta, None]:
        """Run one engine request, recording its trace; closing this generator early aborts the request."""
        request = self._sent(request)
        # closed with this generator, not whenever the garbage collector gets to it: the abort happens now
        async with contextlib.aclosing(self._traced(request, trace, self.engine.generate(request))) as deltas:
            async for delta in deltas:
                yield delta

    async def generate_group(
        self, requests: Sequence[GenerationRequest], traces: Sequence[RequestTrace]
    ) -> list[AsyncGenerator[GenerationDelta, None]]:
        """Run requests that should start decoding together (an answer's points: ``Engine.generate_group``),
        each recorded in its trace. The engine may hold them already: read each stream to its end or close it,
        and ``abort_all`` aborts any stream never read."""
        sent = [self._sent(request) for request in requests]
        streams = await with_defaults(self.engine).generate_group(sent)
        return [self._traced(r, t, s) for r, t, s in zip(sent, traces, streams, strict=True)]

    def _sent(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` with the answer's affinity key, counted in flight until its stream ends."""
        if request.affinity is None:
            request = dataclasses.replace(request, affinity=self.answer_id)
        self._in_flight.add(request.request_id)
        return request

    async def _traced(
        self, request: GenerationRequest, trace: RequestTrace, deltas: AsyncIterator[GenerationDelta]
    ) -> AsyncGenerator[GenerationDelta, None]:
        trace.prompt_token_ids = request.prompt_token_ids or ()
        end = self._ends.pop(request.request_id, None)
        try:
            async for delta in deltas:
                now = self.now()
                cut = False
                if end is not None:
                    text, cut = end.feed(delta.text)
                    if delta.finished and not cut:
                        text += end.finish()
                    delta = dataclasses.replace(delta, text=text, finish_reason="stop" if cut else delta.finish_reason)
                if trace.first_token_s is None and delta.new_tokens:
                    trace.first_token_s = now
                trace.text += delta.text
                trace.token_ids += delta.token_ids
                trace.tokens += delta.new_tokens
                trace.prompt_tokens = delta.prompt_tokens
                trace.cached_prompt_tokens = delta.cached_prompt_tokens
                if delta.finished:
                    trace.finish_reason = delta.finish_reason
                    trace.end_s = now
                yield delta
                if cut:
                    break  # the text ended here: closing the stream aborts the request
        finally:
            close = getattr(deltas, "aclose", None)  # an async generator; a plain iterator has nothing to close
            if close is not None:
                await close()  # closed early: the engine aborts the request (the Engine contract)
            self._in_flight.discard(request.request_id)
        if trace.end_s is None:
            trace.end_s = self.now()

    async def abort_all(self) -> None:
        """Abort every request of this answer that is still running."""
        for request_id in list(self._in_flight):
            await self.engine.abort(request_id)
        self._in_flight.clear()
