"""The Skeleton-of-Thought pipeline: one question in, a stream of typed events out.

    question ─► retrieve passages ─► route (auto) ─► skeleton request (regex-guided, streamed)
             ─► parse points ─► ALL point requests at once ─► assemble in skeleton order ─► AnswerDone(stats)

Every request of one answer shares one prompt prefix (see ``sotrag.prompts.build``), so vLLM's prefix cache
serves the system text, passages, question and skeleton to every point; continuous batching decodes the
points together, which is why N points cost about as much wall time as the longest one. Prompts go to the
engine as token ids (``Engine.encode_chat``: only the chat template makes special tokens), and a point's ids
are the skeleton request's own prompt ids, then the ids it generated, then the point's suffix: the prefix
cache matches token ids, and re-encoding the skeleton's text would give other ids than the model wrote.

Cancellation: closing the event stream (client gone, task cancelled) cancels the point tasks and aborts
every engine request of the answer that has not finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import unicodedata
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    Engine,
    GenerationDelta,
    GenerationRequest,
    SamplingOptions,
    count_tokens_async,
    encode_chat_async,
)
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    AnswerStats,
    Event,
    FallbackEvent,
    Mode,
    PointDelta,
    PointDone,
    PointResult,
    PointStarted,
    RequestedMode,
    RouteEvent,
    SkeletonDelta,
    SkeletonDone,
    SkeletonRetry,
    Source,
    SourcesEvent,
    StageTokens,
)
from sotrag.app.routing.base import RouteDecision, Router
from sotrag.app.skeleton import SkeletonParser, skeleton_line_regex, skeleton_regex
from sotrag.prompts import PROMPT_VERSION
from sotrag.prompts import build as prompts
from sotrag.retrieval.types import Passage, Retriever

# Room kept for the answer when checking that a question fits the model's context.
MIN_ANSWER_TOKENS = 32


class InvalidQuestion(ValueError):
    """The question cannot be answered as asked (empty, too long); the message is user-facing."""


class QuestionTooLong(InvalidQuestion):
    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"the question is {tokens} tokens, too long for the model's context of {limit} tokens")
        self.tokens = tokens
        self.limit = limit


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


@dataclass(frozen=True)
class _SkeletonIds:
    """The skeleton request's prompt ids and the ids it had generated when a point started."""

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]


@dataclass
class _Point:
    index: int
    title: str
    trace: RequestTrace
    skeleton_ids: _SkeletonIds
    skeleton_prefix_tokens: int = 0  # prompt tokens continued from the skeleton request's own ids


class _TaskEnd:
    """Queue marker: one point task has ended (its error, if any, travels with it)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class SoTPipeline:
    """Answers questions with Skeleton-of-Thought or normal decoding over one engine."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings | None = None,
        *,
        retriever: Retriever | None = None,
        router: Router | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.retriever = retriever
        self.router = router

    async def run(self, question: str, **kwargs: Any) -> AnswerResult:
        """Answer and return the final result (the stream's last event); takes ``stream``'s arguments."""
        async for event in self.stream(question, **kwargs):
            if isinstance(event, AnswerDone):
                return event.result
        raise RuntimeError("the answer stream ended without a result")  # pragma: no cover

    async def stream(
        self,
        question: str,
        *,
        mode: RequestedMode = "sot",
        history: Sequence[tuple[str, str]] = (),
        top_k: int | None = None,
        filters: dict[str, str] | None = None,
        sampling: SamplingConfig | None = None,
        sot: SoTConfig | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Stream the events of one answer. Raises ``InvalidQuestion`` before any work for bad input."""
        question = await self.avalidate(question)
        answer = _Answer(self, question, mode, history, sampling or self.settings.sampling, sot or self.settings.sot)
        try:
            async for event in answer.events(top_k if top_k is not None else self.settings.top_k, filters):
                yield event
        finally:
            await answer.cancel()

    def validate(self, question: str) -> str:
        return check_question(question, self.engine.count_tokens, self.engine.max_model_len)

    async def avalidate(self, question: str) -> str:
        """``validate`` for the event loop: the engine may count tokens through a server."""
        question = _non_empty(question)
        return _with_room(question, await count_tokens_async(self.engine, question), self.engine.max_model_len)


def check_question(question: str, count_tokens: Callable[[str], int], max_model_len: int) -> str:
    """The question, stripped; ``InvalidQuestion`` if it is empty or leaves no room for an answer."""
    question = _non_empty(question)
    return _with_room(question, count_tokens(question), max_model_len)


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing to read: only whitespace, control and format characters (a NUL, a
    zero-width space). Such a question would reach the model as an empty one."""
    return not any(unicodedata.category(ch)[0] not in "CZ" for ch in text)


def _non_empty(question: str) -> str:
    question = (question or "").strip()
    if is_blank(question):
        raise InvalidQuestion("the question is empty" + (" (no visible characters)" if question else ""))
    return question


def _with_room(question: str, tokens: int, max_model_len: int) -> str:
    if tokens + MIN_ANSWER_TOKENS > max_model_len:
        raise QuestionTooLong(tokens, max_model_len)
    return question


class _Answer:
    """The state of one answer in flight: its clock, its engine requests, its point tasks."""

    def __init__(
        self,
        pipeline: SoTPipeline,
        question: str,
        mode: RequestedMode,
        history: Sequence[tuple[str, str]],
        sampling: SamplingConfig,
        sot: SoTConfig,
    ) -> None:
        self.p = pipeline
        self.engine = pipeline.engine
        self.question = question
        self.requested_mode: RequestedMode = mode
        self.history = list(history)
        self.sampling = sampling
        self.sot = sot
        self.t0 = perf_counter()
        self.answer_id = uuid.uuid4().hex[:12]
        self.passages: list[Passage] = []
        self.sources: list[Source] = []
        self._extra_numbers: dict[str, int] = {}
        self.passages_dropped = 0
        self.retrieval_s = 0.0
        self.route_reason: str | None = None
        self.route_cause: str | None = None
        self.skeleton: RequestTrace | None = None
        self.normal: RequestTrace | None = None
        self.points: list[_Point] = []
        self.fallback_reason: str | None = None
        self.skeleton_retry_reason: str | None = None
        self.skeleton_mode: str | None = None
        self.skeleton_attempts = 0
        self.skeleton_tokens_discarded = 0  # tokens of a skeleton that was asked again
        self._queue: asyncio.Queue[Event | _TaskEnd] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._tasks_left = 0
        self._in_flight: set[str] = set()

    def now(self) -> float:
        return perf_counter() - self.t0

    # -- the flow ----------------------------------------------------------------------------------

    async def events(self, top_k: int, filters: dict[str, str] | None) -> AsyncIterator[Event]:
        if self.p.retriever is not None and top_k > 0:
            await self._retrieve(top_k, filters)
            yield SourcesEvent(sources=self.sources)

        mode, max_points = await self._route()
        if self.requested_mode == "auto":
            yield RouteEvent(mode=mode, reason=self.route_reason or "")

        if mode == "sot":
            async for event in self._skeleton_of_thought(max_points):
                yield event
        else:
            async for event in self._normal():
                yield event
        yield AnswerDone(result=self._result())

    async def _retrieve(self, top_k: int, filters: dict[str, str] | None) -> None:
        assert self.p.retriever is not None
        start = self.now()
        found = await self.p.retriever.aretrieve(self.question, top_k, filters)
        self.retrieval_s = self.now() - start
        self.passages = await self._fit(found, int(self.engine.max_model_len * self.p.settings.context_share))
        self.passages_dropped = len(found) - len(self.passages)
        self.sources = [self._source(i, p) for i, p in enumerate(self.passages, start=1)]

    async def _fit(self, found: list[Passage], budget: int) -> list[Passage]:
        """The passages, in order, whose tokens (plus 2 each for their separators) fit ``budget``.

        First one count of the whole system text, as every prompt of this answer will carry it: when all passages
        fit (the usual case) that is the only tokenization of the passages, and the engine's content cache hands its
        ids to the skeleton and point prompts. Counting each passage and then encoding the joined text tokenized
        them twice: at 1500 context tokens that was 32.4 against 18-20 ms of CPU per SoT answer on the 2-core dev
        machine (``benchmarks/pipeline_cpu.py --tokenizer``). Only when they do not all fit is each passage
        counted, and the first ones that fit kept."""
        if not found:
            return []
        whole = await count_tokens_async(self.engine, prompts.system_message(found).content)
        instruction = await count_tokens_async(self.engine, prompts.grounded_instruction())
        if whole - instruction + 2 * len(found) <= budget:
            return list(found)
        kept: list[Passage] = []
        used = 0
        for passage in found:
            cost = await count_tokens_async(self.engine, prompts.format_passage(len(kept) + 1, passage)) + 2
            if used + cost <= budget:
                used += cost
                kept.append(passage)
        return kept

    @staticmethod
    def _source(n: int, p: Passage) -> Source:
        return Source(n=n, source=p.source, heading=p.heading, score=p.score, snippet=p.text[:300], chunk_id=p.chunk_id)

    async def _route(self) -> tuple[Mode, int]:
        max_points = self.sot.max_points
        if self.requested_mode != "auto":
            return self.requested_mode, max_points
        if self.p.router is None:
            decision = RouteDecision("sot", "no router configured: auto uses SoT")
        else:
            watch_loop = getattr(self.p.router, "watch_loop", None)  # SoTRouter's event-loop lag signal
            if watch_loop is not None:
                watch_loop()
            decision = await asyncio.to_thread(self.p.router.route, self.question, self.engine.load())
        self.route_reason = decision.reason
        self.route_cause = decision.cause
        if decision.max_points is not None:
            max_points = max(self.sot.min_points, min(max_points, decision.max_points))
        return decision.mode, max_points

    async def _skeleton_of_thought(self, max_points: int) -> AsyncIterator[Event]:
        sot = self.sot
        min_points = min(sot.min_points, max_points)
        skeleton_messages = prompts.skeleton_messages(
            self.question,
            self.passages,
            self.history,
            min_points=min_points,
            max_points=max_points,
            min_words=sot.min_words,
            max_words=sot.max_words,
        )
        # Unguided by default (plain decoding, nothing on the engine core's thread); the regex guide is the
        # retry when that gives too few points, or the first try with ``guided_skeleton``.
        attempts: list[tuple[str, str | None]] = []
        if sot.guided_skeleton:
            attempts.append(("guided", self._skeleton_regex(min_points, max_points)))
        else:
            attempts.append(("unguided", None))
            if sot.skeleton_fallback == "guided":
                attempts.append(("guided retry", self._skeleton_regex(min_points, max_points)))

        titles: list[str] = []
        parser = SkeletonParser(max_points=max_points)
        for n, (kind, regex) in enumerate(attempts):
            if n:
                self.skeleton_retry_reason = (
                    f"the unguided skeleton had {len(titles)} usable point(s), fewer than "
                    f"{sot.fallback_min_points}: asked again, guided"
                )
                await self.cancel()  # eager points of the discarded skeleton
                self.points = []
                yield SkeletonRetry(reason=self.skeleton_retry_reason)
            self.skeleton_mode = kind
            parser = SkeletonParser(max_points=max_points)
            async for event in self._skeleton_attempt(kind, regex, parser, min_points, skeleton_messages):
                yield event
            titles = parser.points
            if len(titles) >= sot.fallback_min_points:
                break

        if len(titles) < sot.fallback_min_points:
            tried = " and ".join(f"the {kind} skeleton" for kind, _ in attempts)
            self.fallback_reason = (
                f"{tried} had {len(titles)} usable point(s), fewer than {sot.fallback_min_points}: normal decoding"
            )
            await self.cancel()
            yield FallbackEvent(reason=self.fallback_reason)
            self.points = []
            async for event in self._normal():
                yield event
            return
        yield SkeletonDone(points=titles)

        # Stage 2: every remaining point at once. All their requests are built first and then handed to the
        # engine together: points that reach vLLM one by one are prefilled in separate steps (the first one
        # alone), which put an extra prefill step between the skeleton and the answer (docs/BENCHMARKS.md,
        # "the points' hand-over").
        batch = [self._new_point(title) for title in titles[len(self.points) :]]
        requests = await asyncio.gather(*(self._prepare(point, parser.text, skeleton_messages) for point in batch))
        # every task is created before the first event goes out: a consumer that awaits on an event (a server
        # writing to its socket) would otherwise let the first point reach the engine before the others exist
        started = [
            self._start_point(p, parser.text, skeleton_messages, r) for p, r in zip(batch, requests, strict=True)
        ]
        for event in started:
            yield event
        async for event in self._drain(wait=True):
            yield event

    def _skeleton_regex(self, min_points: int, max_points: int) -> str:
        sot = self.sot
        if sot.guided_regex == "word":
            return skeleton_regex(min_points, max_points, sot.min_words, sot.max_words)
        return skeleton_line_regex(min_points, max_points, sot.guided_line_chars)

    async def _skeleton_attempt(
        self,
        kind: str,
        regex: str | None,
        parser: SkeletonParser,
        min_points: int,
        skeleton_messages: list[ChatMessage],
    ) -> AsyncIterator[Event]:
        """One skeleton request, streamed into ``parser``. It ends early (the request is aborted) once
        ``max_points`` lines are complete, or once the list has ended after ``min_points``: the rest would be
        decoded for nothing. In eager mode a point starts as soon as its line is complete."""
        sot, s = self.sot, self.sampling
        max_tokens = s.skeleton_max_tokens
        stops: tuple[str, ...] = ()
        if regex is None:  # bounded: about 2 tokens a word plus the numbering, per point
            max_tokens = min(max_tokens, parser.max_points * (2 * sot.max_words + 4))
            stops = (f"\n{parser.max_points + 1}.",)
        request = await self._chat_request(
            "skeleton" if kind != "guided retry" else "skeleton-guided",
            skeleton_messages,
            self._options(max_tokens, regex=regex, stop=stops),
        )
        trace = RequestTrace(start_s=self.now())
        if self.skeleton is not None:
            self.skeleton_tokens_discarded += self.skeleton.tokens
        self.skeleton = trace
        self.skeleton_attempts += 1
        stream = self._generate(request, trace)
        try:
            async for delta in stream:
                if delta.text:
                    yield SkeletonDelta(text=delta.text)
                for title in parser.feed(delta.text):
                    if sot.eager:
                        yield self._start_point(self._new_point(title), parser.text, skeleton_messages)
                async for event in self._drain(wait=False):  # eager points already streaming
                    yield event
                if not delta.finished and (
                    len(parser.points) >= parser.max_points or (parser.list_ended and len(parser.points) >= min_points)
                ):
                    trace.finish_reason = "enough points"
                    trace.end_s = self.now()
                    break
        finally:
            await stream.aclose()  # aborts the request if it was still running
        parser.finish(truncated=trace.finish_reason in ("length", "enough points"))

    async def _drain(self, *, wait: bool) -> AsyncIterator[Event]:
        """Yield what the point tasks queued: until all have ended (``wait``), or until the queue is empty."""
        while self._tasks_left and (wait or not self._queue.empty()):
            item = await self._queue.get()
            if isinstance(item, _TaskEnd):
                self._tasks_left -= 1
                if item.error is not None:
                    raise item.error
            else:
                yield item

    def _new_point(self, title: str) -> _Point:
        """The next point, with the skeleton request's ids as far as they are written now."""
        skeleton = self.skeleton or RequestTrace(start_s=0.0)
        ids = _SkeletonIds(skeleton.prompt_token_ids, tuple(skeleton.token_ids))
        point = _Point(len(self.points) + 1, title, RequestTrace(start_s=self.now()), ids)
        self.points.append(point)
        return point

    def _start_point(
        self,
        point: _Point,
        skeleton_text: str,
        skeleton_messages: list[ChatMessage],
        request: GenerationRequest | None = None,
    ) -> PointStarted:
        """Run ``point`` in its own task: its ``request`` as given, or built in the task (eager points)."""
        self._tasks.append(asyncio.create_task(self._expand(point, skeleton_text, skeleton_messages, request)))
        self._tasks_left += 1
        return PointStarted(index=point.index, title=point.title)

    async def _prepare(
        self, point: _Point, skeleton_text: str, skeleton_messages: list[ChatMessage]
    ) -> GenerationRequest:
        """``point``'s engine request: its own passages (per-point retrieval), then its prompt."""
        extra = await self._point_passages(point) if self._per_point_retrieval else []
        return await self._point_request(point, skeleton_text, skeleton_messages, extra, point.skeleton_ids)

    async def _expand(
        self,
        point: _Point,
        skeleton_text: str,
        skeleton_messages: list[ChatMessage],
        request: GenerationRequest | None,
    ) -> None:
        error: BaseException | None = None
        try:
            if request is None:
                request = await self._prepare(point, skeleton_text, skeleton_messages)
            async for delta in self._generate(request, point.trace):
                if delta.text:
                    self._queue.put_nowait(PointDelta(index=point.index, text=delta.text))
            self._queue.put_nowait(PointDone(index=point.index, text=point.trace.text, tokens=point.trace.tokens))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            self._queue.put_nowait(_TaskEnd(error))

    async def _point_request(
        self,
        point: _Point,
        skeleton_text: str,
        skeleton_messages: list[ChatMessage],
        extra: list[tuple[int, Passage]],
        skeleton_ids: _SkeletonIds,
    ) -> GenerationRequest:
        """Point ``index``'s request. Its token ids continue the skeleton request's own ids (prompt, then
        output) with the point's suffix, so vLLM's prefix cache serves the whole skeleton to it; where that
        cannot be exact (see ``continue_skeleton``) the whole point prompt is encoded afresh."""
        messages = prompts.point_messages(
            skeleton_messages,
            skeleton_text,
            point.index,
            point.title,
            sentences=self.sot.point_sentences,
            extra_passages=extra,
        )
        stops = ("\n\n", *(f"\n{j}." for j in range(1, self.sot.max_points + 2)))
        s = self.sampling
        options = self._options(
            s.point_max_tokens, min_tokens=s.point_min_tokens, stop=stops, stream_interval=s.stream_interval
        )
        whole = await encode_chat_async(self.engine, messages, continue_final_message=True)
        continued = continue_skeleton(whole, len(skeleton_messages) - len(messages), skeleton_text, skeleton_ids)
        prompt, ids = continued or (whole.text, whole.token_ids)
        if continued is not None:
            point.skeleton_prefix_tokens = len(skeleton_ids.prompt_ids) + len(skeleton_ids.output_ids)
        return GenerationRequest(self._request_id(f"point{point.index}"), prompt, options, prompt_token_ids=ids)

    @property
    def _per_point_retrieval(self) -> bool:
        return self.p.retriever is not None and self.p.settings.per_point_retrieval and bool(self.passages)

    async def _point_passages(self, point: _Point) -> list[tuple[int, Passage]]:
        """Passages for this point alone (question + point title), not already given, numbered after the
        shared ones. They go after the shared prefix, so the prefix stays shared."""
        assert self.p.retriever is not None
        found = await self.p.retriever.aretrieve(f"{self.question} {point.title}", self.p.settings.per_point_k + 3)
        known = {p.chunk_id or p.text for p in self.passages}
        fresh: list[tuple[int, Passage]] = []
        for passage in found:
            key = passage.chunk_id or passage.text
            if key in known:
                continue
            if key not in self._extra_numbers:
                self._extra_numbers[key] = len(self.sources) + 1
                self.sources.append(self._source(self._extra_numbers[key], passage))
            fresh.append((self._extra_numbers[key], passage))
            if len(fresh) == self.p.settings.per_point_k:
                break
        return fresh

    async def _normal(self) -> AsyncIterator[Event]:
        s = self.sampling
        messages = prompts.normal_messages(self.question, self.passages, self.history)
        options = self._options(s.normal_max_tokens, min_tokens=s.normal_min_tokens, stream_interval=s.stream_interval)
        request = await self._chat_request("normal", messages, options)
        self.normal = RequestTrace(start_s=self.now())
        async for delta in self._generate(request, self.normal):
            if delta.text:
                yield AnswerDelta(text=delta.text)

    # -- engine requests ---------------------------------------------------------------------------

    async def _generate(self, request: GenerationRequest, trace: RequestTrace) -> AsyncGenerator[GenerationDelta, None]:
        """Run one engine request, recording its trace. Every request carries the answer's affinity key, so an
        engine over several servers keeps one answer on one server (and its prefix cache)."""
        if request.affinity is None:
            request = dataclasses.replace(request, affinity=self.answer_id)
        self._in_flight.add(request.request_id)
        trace.prompt_token_ids = request.prompt_token_ids or ()
        deltas = self.engine.generate(request)
        try:
            async for delta in deltas:
                now = self.now()
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
        finally:
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()  # closed early: the engine aborts the request (the Engine contract)
            self._in_flight.discard(request.request_id)
        if trace.end_s is None:
            trace.end_s = self.now()

    async def _chat_request(
        self, stage: str, messages: Sequence[ChatMessage], options: SamplingOptions
    ) -> GenerationRequest:
        """A request whose token ids the engine built from ``messages`` (no special token from their text)."""
        prompt: ChatPrompt = await encode_chat_async(self.engine, messages)
        return GenerationRequest(self._request_id(stage), prompt.text, options, prompt_token_ids=prompt.token_ids)

    def _options(
        self,
        max_tokens: int,
        *,
        min_tokens: int = 0,
        stop: tuple[str, ...] = (),
        regex: str | None = None,
        stream_interval: int = 1,
    ) -> SamplingOptions:
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
            ignore_eos=s.ignore_eos,
            allowed_token_ids=tuple(s.allowed_token_ids) if s.allowed_token_ids else None,
            stream_interval=stream_interval,
        )

    def _request_id(self, stage: str) -> str:
        return f"sotrag-{self.answer_id}-{stage}"

    async def cancel(self) -> None:
        """Stop every point task and abort every engine request still running."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._tasks_left = 0
        for request_id in list(self._in_flight):
            await self.engine.abort(request_id)
        self._in_flight.clear()

    # -- the result --------------------------------------------------------------------------------

    def _result(self) -> AnswerResult:
        total_s = self.now()
        points = [
            PointResult(
                index=p.index,
                title=p.title,
                text=p.trace.text,
                tokens=p.trace.tokens,
                start_s=p.trace.start_s,
                first_token_s=p.trace.first_token_s,
                end_s=p.trace.end_s,
                prompt_tokens=p.trace.prompt_tokens,
                cached_prompt_tokens=p.trace.cached_prompt_tokens,
                uncached_prompt_tokens=p.trace.prompt_tokens - p.trace.cached_prompt_tokens,
                skeleton_prefix_tokens=p.skeleton_prefix_tokens,
                finish_reason=p.trace.finish_reason,
            )
            for p in self.points
        ]
        if self.normal is not None:
            mode: Mode = "normal"
            answer = self.normal.text.strip()
        else:
            mode = "sot"
            answer = "\n".join(f"{p.index}. {p.title}{p.text}".rstrip() for p in points)
        return AnswerResult(
            question=self.question,
            mode=mode,
            requested_mode=self.requested_mode,
            answer=answer,
            skeleton=self.skeleton.text if self.skeleton else "",
            points=points,
            fallback_reason=self.fallback_reason,
            skeleton_retry_reason=self.skeleton_retry_reason,
            route_reason=self.route_reason,
            route_cause=self.route_cause,
            sources=self.sources,
            stats=self._stats(points, total_s),
            model=self.engine.model_name,
            prompt_version=PROMPT_VERSION,
        )

    def _stats(self, points: list[PointResult], total_s: float) -> AnswerStats:
        traces = [t for t in (self.skeleton, self.normal) if t is not None] + [p.trace for p in self.points]
        firsts = [t.first_token_s for t in traces if t.first_token_s is not None]
        ttft = min(firsts) if firsts else None
        tokens = sum(t.tokens for t in traces) + self.skeleton_tokens_discarded
        skeleton_s = None
        if self.skeleton is not None and self.skeleton.end_s is not None:
            skeleton_s = self.skeleton.end_s - self.skeleton.start_s
        expansion_s = None
        if points:
            ends = [p.end_s for p in points if p.end_s is not None]
            expansion_s = (max(ends) if ends else total_s) - min(p.start_s for p in points)
        prompt = StageTokens(
            skeleton=self.skeleton.prompt_tokens if self.skeleton else 0,
            points=sum(p.prompt_tokens for p in points),
            normal=self.normal.prompt_tokens if self.normal else 0,
        )
        cached = StageTokens(
            skeleton=self.skeleton.cached_prompt_tokens if self.skeleton else 0,
            points=sum(p.cached_prompt_tokens for p in points),
            normal=self.normal.cached_prompt_tokens if self.normal else 0,
        )
        all_prompt = prompt.skeleton + prompt.points + prompt.normal
        all_cached = cached.skeleton + cached.points + cached.normal
        return AnswerStats(
            ttft_s=ttft,
            tpot_s=(total_s - ttft) / (tokens - 1) if ttft is not None and tokens > 1 else None,
            retrieval_s=self.retrieval_s,
            skeleton_s=skeleton_s,
            expansion_s=expansion_s,
            total_s=total_s,
            tokens=tokens,
            skeleton_tokens=self.skeleton.tokens if self.skeleton else 0,
            tokens_per_s=tokens / total_s if total_s > 0 else 0.0,
            num_points=len(points),
            prompt_tokens=prompt,
            cached_prompt_tokens=cached,
            cached_share=all_cached / all_prompt if all_prompt else 0.0,
            point_uncached_prompt_tokens=[p.uncached_prompt_tokens for p in points],
            passages_dropped=self.passages_dropped,
            skeleton_mode=self.skeleton_mode,
            skeleton_attempts=self.skeleton_attempts,
        )


def continue_skeleton(
    whole: ChatPrompt, index: int, skeleton_text: str, skeleton: _SkeletonIds
) -> tuple[str, tuple[int, ...]] | None:
    """A point prompt as the skeleton request's own ids, then the ids it generated, then the point's suffix
    (the end of the assistant turn, the point instruction, the open "i. title"), taken from ``whole`` (the
    point prompt encoded whole, message ``index`` being the skeleton's assistant turn). Returns the prompt
    text (for logs) and ids, or None where that would not be exact: no ids from the engine, or a template
    that renders the skeleton request's prompt differently inside the longer conversation."""
    if not skeleton.prompt_ids or not skeleton.output_ids or len(whole.token_spans) < -index:
        return None
    tokens, chars = whole.token_spans[index], whole.text_spans[index]
    if tokens is None or chars is None or whole.token_ids[: tokens[0]] != skeleton.prompt_ids:
        return None
    text = whole.text[: chars[0]] + skeleton_text + whole.text[chars[1] :]
    return text, skeleton.prompt_ids + skeleton.output_ids + whole.token_ids[tokens[1] :]
