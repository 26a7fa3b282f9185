"""The Skeleton-of-Thought method: one question in, a stream of typed events out.

    retrieve passages ─► route (auto) ─► skeleton request (streamed, read line by line)
                      ─► fork: ALL point requests at once ─► assemble in skeleton order ─► AnswerDone(stats)

Every request of one answer shares one prompt prefix (``sotrag.prompts.build``), so vLLM's prefix cache serves the
system text, passages, question and skeleton to every point, and continuous batching decodes the points together:
N points cost about as much wall time as the longest one. The skeleton is plain decoding by default; a regex guide
(vLLM structured outputs) is the retry when it gives too few points, or the first try with ``sot.guided_skeleton``.
Too few points even then: the answer falls back to normal decoding.

Where the pieces live: the request a surface sends (``request``), the engine requests of one answer
(``engine_calls``), the passages (``passages``), the skeleton reader (``skeleton``), the skeleton-to-point fork
(``fork``), the point tasks (``points``) and the result (``result``). Closing the event stream (client gone, task
cancelled) stops the point tasks and aborts every engine request of the answer that has not finished.

A started point the answer no longer wants (every point of a discarded skeleton; in eager mode, one the skeleton
reader took back) is withdrawn: its request is aborted, nothing more of it goes out, a ``point_withdrawn`` event
says so, and a point that replaces it runs under a request id of its own.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from sotrag.app.citations import CitationStream, read_citations
from sotrag.app.config import Settings, SoTConfig
from sotrag.app.engine_calls import EngineCalls, RequestTrace
from sotrag.app.engines.base import ChatMessage, Engine, GenerationRequest, count_tokens_async
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    FallbackEvent,
    Mode,
    PointStarted,
    PointWithdrawn,
    RouteEvent,
    SkeletonDelta,
    SkeletonDone,
    SkeletonRetry,
    SourcesEvent,
)
from sotrag.app.fork import Fork
from sotrag.app.passages import Grounding, passage_budget
from sotrag.app.points import Point, PointGroup
from sotrag.app.request import (
    MIN_ANSWER_TOKENS,
    AnswerRequest,
    InvalidQuestion,
    QuestionTooLong,
    ResolvedRequest,
    ValidatedRequest,
    build_request,
    is_blank,
    validate_request,
)
from sotrag.app.result import AnswerRecord, assemble
from sotrag.app.routing.base import RouteDecision, Router
from sotrag.app.skeleton import SkeletonParser, skeleton_line_regex, skeleton_regex
from sotrag.prompts import build as prompts
from sotrag.retrieval.types import Retriever

__all__ = [
    "MIN_ANSWER_TOKENS",
    "AnswerRequest",
    "InvalidQuestion",
    "QuestionTooLong",
    "SoTPipeline",
    "ValidatedRequest",
    "is_blank",
]


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

    def request(self, request: AnswerRequest | str, **fields: Any) -> AnswerRequest:
        """An ``AnswerRequest`` from one, or from a question and keyword fields (``mode``, ``history``,
        ``passages_k`` (or its old name ``top_k``), ``filters``, ``sampling``, ``sot``)."""
        if "top_k" in fields:
            fields["passages_k"] = fields.pop("top_k")
        if isinstance(request, AnswerRequest):
            return build_request(request, fields) if fields else request
        return build_request(None, {"question": request, **{k: v for k, v in fields.items() if v is not None}})

    async def validate(self, request: AnswerRequest | str, **fields: Any) -> ValidatedRequest:
        """Check the request against the model, once: ``InvalidQuestion`` (or ``QuestionTooLong``) for bad input."""
        return await validate_request(
            self.request(request, **fields),
            self.settings,
            functools.partial(count_tokens_async, self.engine),
            self.engine.max_model_len,
        )

    async def run(self, request: AnswerRequest | ValidatedRequest | str, **fields: Any) -> AnswerResult:
        """Answer and return the final result (the stream's last event); takes ``stream``'s arguments."""
        async for event in self.stream(request, **fields):
            if isinstance(event, AnswerDone):
                return event.result
        raise RuntimeError("the answer stream ended without a result")  # pragma: no cover

    async def stream(
        self, request: AnswerRequest | ValidatedRequest | str, **fields: Any
    ) -> AsyncGenerator[Event, None]:
        """Stream the events of one answer. A request not validated yet is validated first, and bad input raises
        ``InvalidQuestion`` before any work."""
        if not isinstance(request, ValidatedRequest):
            request = await self.validate(request, **fields)
        answer = _Answer(self, request.request)
        try:
            async for event in answer.events():
                yield event
        finally:
            await answer.close()


class _Answer:
    """One answer in flight, stage by stage: the method reads top to bottom in ``events``."""

    def __init__(self, pipeline: SoTPipeline, request: ResolvedRequest) -> None:
        self.p = pipeline
        self.request = request
        self.sot: SoTConfig = request.sot
        self.calls = EngineCalls(pipeline.engine, request.sampling)
        self.points = PointGroup(self.calls, lambda numbers: self.record.grounding.cite(numbers))
        self.record = AnswerRecord(request, points=self.points.points)

    async def events(self) -> AsyncIterator[Event]:
        if self.p.retriever is not None and self.request.passages_k > 0:
            self.record.grounding = await self.retrieve(self.p.retriever)
            yield SourcesEvent(sources=self.record.grounding.sources)

        mode, max_points = await self.route()
        if self.request.mode == "auto":
            yield RouteEvent(mode=mode, reason=self.record.route_reason or "")

        stages = self.skeleton_of_thought(max_points) if mode == "sot" else self.normal()
        async for event in stages:
            yield event
        yield AnswerDone(result=assemble(self.record, self.calls.now(), self.p.engine.model_name))

    async def close(self) -> None:
        """Stop every point task and abort every engine request still running."""
        await self.points.cancel()
        await self.calls.abort_all()

    # -- stage 0: passages and route -----------------------------------------------------------------

    async def retrieve(self, retriever: Retriever) -> Grounding:
        r = self.request
        budget = await passage_budget(
            self.p.engine,
            r.question,
            r.history,
            share=self.p.settings.context_share,
            skeleton_tokens=self.calls.sampling.skeleton_max_tokens,
            sot=self.sot,
        )
        return await Grounding.retrieve(retriever, self.p.engine, r.question, r.passages_k, r.filters, budget)

    async def route(self) -> tuple[Mode, int]:
        """The mode this answer uses, and at most how many points (the router may ask for fewer)."""
        max_points = self.sot.max_points
        if self.request.mode != "auto":
            return self.request.mode, max_points
        if self.p.router is None:
            decision = RouteDecision("sot", "no router configured: auto uses SoT")
        else:
            self.p.router.watch_loop()  # SoTRouter's event-loop lag signal
            decision = await asyncio.to_thread(self.p.router.route, self.request.question, self.p.engine.load())
        self.record.route_reason = decision.reason
        self.record.route_cause = decision.cause
        if decision.max_points is not None:
            max_points = max(self.sot.min_points, min(max_points, decision.max_points))
        return decision.mode, max_points

    # -- stage 1: the skeleton -----------------------------------------------------------------------

    async def skeleton_of_thought(self, max_points: int) -> AsyncIterator[Event]:
        sot = self.sot
        min_points = min(sot.min_points, max_points)
        fork = Fork(self.calls, self.skeleton_messages(min_points, max_points), sot)
        attempts = skeleton_attempts(sot, min_points, max_points)
        parser: SkeletonParser | None = None
        for kind, regex in attempts:
            if parser is not None:  # the attempt before gave too few points: discard it, ask again guided
                async for event in self.discard_skeleton(len(parser.points)):
                    yield event
            parser = SkeletonParser(max_points=max_points)
            async for event in self.skeleton(kind, regex, parser, min_points, fork):
                yield event
            if len(parser.points) >= sot.fallback_min_points:
                break
        assert parser is not None
        titles = [self.title(t) for t in parser.points]
        if len(titles) < sot.fallback_min_points:
            async for event in self.fall_back([kind for kind, _ in attempts], len(titles)):
                yield event
            return
        async for event in self.withdraw_changed(titles):  # eager points the final skeleton does not have
            yield event
        yield SkeletonDone(points=titles)
        async for event in self.expand(titles, parser.text, fork):
            yield event

    def skeleton_messages(self, min_points: int, max_points: int) -> list[ChatMessage]:
        sot, r = self.sot, self.request
        return prompts.skeleton_messages(
            r.question,
            self.record.grounding.passages,
            r.history,
            min_points=min_points,
            max_points=max_points,
            min_words=sot.min_words,
            max_words=sot.max_words,
        )

    async def skeleton(
        self, kind: str, regex: str | None, parser: SkeletonParser, min_points: int, fork: Fork
    ) -> AsyncIterator[Event]:
        """One skeleton request, streamed into ``parser``. It ends early (the request is aborted) once the
        reader says the list is complete: the rest would be decoded for nothing. In eager mode a point starts
        (forks) as soon as its line is complete."""
        max_tokens = self.calls.sampling.skeleton_max_tokens
        stops: tuple[str, ...] = ()
        if regex is None:  # bounded: about 2 tokens a word plus the numbering, per point
            max_tokens = min(max_tokens, parser.max_points * (2 * self.sot.max_words + 4))
            stops = (f"\n{parser.max_points + 1}.",)
        stage = "skeleton" if kind != "guided retry" else "skeleton-guided"
        options = self.calls.options(max_tokens, regex=regex, stop=stops)
        request = await self.calls.chat_request(stage, fork.skeleton_messages, options)
        trace = RequestTrace(start_s=self.calls.now())
        self.record.new_skeleton(trace, kind)
        stream = self.calls.generate(request, trace)
        # what users see of the skeleton's markers (the result's skeleton)
        shown = self.record.skeleton_citations = CitationStream(self.record.grounding.numbers())
        try:
            async for delta in stream:
                text, _ = shown.feed(delta.text)
                if text:
                    yield SkeletonDelta(text=text)
                fresh = parser.feed(delta.text)
                if self.sot.eager:
                    async for event in self.follow(parser, bool(fresh), fork):
                        yield event
                async for event in self.points.drain(wait=False):  # eager points already streaming
                    yield event
                if not delta.finished and _enough_points(parser, min_points):
                    trace.finish_reason = "enough points"
                    trace.end_s = self.calls.now()
                    break
        finally:
            await stream.aclose()  # aborts the request if it was still running
        text, _ = shown.finish()
        if text:
            yield SkeletonDelta(text=text)
        parser.finish(truncated=trace.finish_reason in ("length", "enough points"))

    def title(self, title: str) -> str:
        """A point title as users see it: a citation marker in it that names no passage is removed (counted with
        the skeleton's), even when that leaves the title empty ("2. [9]" is the point "2." as the skeleton showed)."""
        return read_citations(title, self.record.grounding.numbers())[0].strip()

    async def discard_skeleton(self, usable: int) -> AsyncIterator[Event]:
        """Forget a skeleton with too few points (and its eager points) before asking again."""
        self.record.skeleton_retry_reason = (
            f"the unguided skeleton had {usable} usable point(s), fewer than {self.sot.fallback_min_points}: "
            "asked again, guided"
        )
        async for event in self.withdraw(1, "its skeleton was discarded: asked again, guided"):
            yield event
        await self.calls.abort_all()
        yield SkeletonRetry(reason=self.record.skeleton_retry_reason)

    async def fall_back(self, kinds: list[str], usable: int) -> AsyncIterator[Event]:
        """Too few points after every attempt: normal decoding answers instead."""
        tried = " and ".join(f"the {kind} skeleton" for kind in kinds)
        self.record.fallback_reason = (
            f"{tried} had {usable} usable point(s), fewer than {self.sot.fallback_min_points}: normal decoding"
        )
        async for event in self.withdraw(1, "its skeleton had too few points: normal decoding answers"):
            yield event
        await self.calls.abort_all()
        yield FallbackEvent(reason=self.record.fallback_reason)
        async for event in self.normal():
            yield event

    # -- eager points that the skeleton takes back ---------------------------------------------------

    async def follow(self, parser: SkeletonParser, fresh: bool, fork: Fork) -> AsyncIterator[Event]:
        """Eager mode, after each skeleton delta: the started points must still be the first of the reader's
        points (it may take points back: text it read as the list was reasoning before a lone ``</think>``).
        Points it took back are withdrawn; points it completed (``fresh``, numbered lines) start."""
        titles = [self.title(t) for t in parser.points]
        async for event in self.withdraw_changed(titles):
            yield event
        if fresh:
            for title in titles[len(self.points.points) :]:
                yield self.fork_eagerly(title, parser.text, fork)

    async def withdraw_changed(self, titles: Sequence[str]) -> AsyncIterator[Event]:
        """Withdraw the started points from the first one that is not the skeleton's point of that index."""
        started = self.points.points
        first = next((p.index for p in started if p.index > len(titles) or titles[p.index - 1] != p.title), None)
        if first is not None:
            async for event in self.withdraw(first, "the skeleton reader took this point back"):
                yield event

    async def withdraw(self, first: int, reason: str) -> AsyncIterator[Event]:
        """Take back the points from index ``first`` on: their tasks stop (aborting their requests), nothing they
        queued goes out, and each is reported withdrawn; their first tokens still count for ``ttft_s``."""
        for point in await self.points.withdraw(first):
            self.record.withdraw(point.trace)
            yield PointWithdrawn(index=point.index, reason=reason)

    # -- stage 2: the points, all at once ------------------------------------------------------------

    async def expand(self, titles: Sequence[str], skeleton_text: str, fork: Fork) -> AsyncIterator[Event]:
        """Every point not started yet (all of them unless eager), at once; then every point's events until
        the last one is done. All requests are built first and handed to the engine as one group
        (``generate_group``): points that reach vLLM one by one are prefilled in separate engine steps, which
        puts an extra step between the skeleton and the answer (docs/BENCHMARKS.md). Every task is created
        before the first event goes out."""
        citable = self.record.grounding.numbers()
        batch = [self.points.new(title, self.record.skeleton, citable) for title in titles[len(self.points.points) :]]
        built = await asyncio.gather(*(self.point_request(p, skeleton_text, fork) for p in batch))
        for point, (_, prefix) in zip(batch, built, strict=True):
            point.skeleton_prefix_tokens = prefix
        streams = await self.calls.generate_group([request for request, _ in built], [p.trace for p in batch])
        started = [self.points.start(point, stream) for point, stream in zip(batch, streams, strict=True)]
        for started_event in started:
            yield started_event
        async for event in self.points.drain(wait=True):
            yield event

    def fork_eagerly(self, title: str, skeleton_text: str, fork: Fork) -> PointStarted:
        """Eager mode: one point starts while the skeleton is still being written; its request is built in its
        own task, from the skeleton's text and ids as they are at this moment."""
        point = self.points.new(title, self.record.skeleton, self.record.grounding.numbers())
        return self.points.start(point, functools.partial(self.point_request, skeleton_text=skeleton_text, fork=fork))

    async def point_request(self, point: Point, skeleton_text: str, fork: Fork) -> tuple[GenerationRequest, int]:
        """``point``'s engine request: its own passages first (per-point retrieval), then the fork."""
        extra = []
        retriever = self.p.retriever
        if retriever is not None and self.p.settings.per_point_retrieval and self.record.grounding.passages:
            k = self.p.settings.per_point_k
            r, query = self.request, self.p.settings.per_point_query
            extra = await self.record.grounding.for_point(
                retriever, r.question, point.title, k, r.filters, query, engine=self.p.engine
            )
            point.citable.update(n for n, _ in extra)
        return await fork.point_request(point.index, point.title, skeleton_text, point.skeleton_ids, extra)

    # -- or: normal decoding -------------------------------------------------------------------------

    async def normal(self) -> AsyncIterator[Event]:
        s, r = self.calls.sampling, self.request
        messages = prompts.normal_messages(r.question, self.record.grounding.passages, r.history)
        options = self.calls.options(  # a client's stop strings and JSON schema apply to normal answers only
            s.normal_max_tokens,
            min_tokens=s.normal_min_tokens,
            stream_interval=s.stream_interval,
            stop=tuple(s.stop),
            json_schema=json.dumps(s.json_schema) if s.json_schema is not None else None,
        )
        request = await self.calls.chat_request("normal", messages, options)
        self.record.normal = RequestTrace(start_s=self.calls.now())
        reader = self.record.normal_citations = CitationStream(self.record.grounding.numbers())
        async for delta in self.calls.generate(request, self.record.normal):
            shown, _ = reader.feed(delta.text)
            if shown:
                self.record.normal_text += shown
                yield AnswerDelta(text=shown)
        shown, _ = reader.finish()
        if shown:
            self.record.normal_text += shown
            yield AnswerDelta(text=shown)


def skeleton_attempts(sot: SoTConfig, min_points: int, max_points: int) -> list[tuple[str, str | None]]:
    """The skeleton requests to try in turn, as (kind, regex guide or None): unguided, then the guided retry
    (``sot.skeleton_fallback``); or guided from the start (``sot.guided_skeleton``)."""
    if sot.guided_skeleton:
        return [("guided", _skeleton_regex(sot, min_points, max_points))]
    attempts: list[tuple[str, str | None]] = [("unguided", None)]
    if sot.skeleton_fallback == "guided":
        attempts.append(("guided retry", _skeleton_regex(sot, min_points, max_points)))
    return attempts


def _skeleton_regex(sot: SoTConfig, min_points: int, max_points: int) -> str:
    if sot.guided_regex == "word":
        return skeleton_regex(min_points, max_points, sot.min_words, sot.max_words)
    return skeleton_line_regex(min_points, max_points, sot.guided_line_chars)


def _enough_points(parser: SkeletonParser, min_points: int) -> bool:
    """The skeleton may stop here: ``max_points`` lines, or the reader saw the list end (a closing sentence after
    the list and a line after it that does not go on with the list, ``SkeletonParser.list_ended``) after
    ``min_points``. Never at a blank line alone: real lists put blank lines between their items."""
    return len(parser.points) >= parser.max_points or (parser.list_ended and len(parser.points) >= min_points)
