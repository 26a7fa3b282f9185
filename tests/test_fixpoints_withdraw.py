"""A discarded skeleton attempt, and eager points the skeleton reader takes back, leave nothing behind.

Scripted engine (no model): a guided retry or a fallback after eager points started, a reasoning block closed by a
lone ``</think>``, the in-order text (OpenAI chunks, LangChain stream) against the final answer, and the answer's
time to first token after a retry.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engine_calls import EngineCalls, RequestTrace
from sotrag.app.engines.base import GenerationDelta, GenerationRequest
from sotrag.app.events import (
    AnswerDone,
    AnswerResult,
    Event,
    PointDone,
    PointStarted,
    PointWithdrawn,
    SkeletonDelta,
    SkeletonDone,
    SkeletonRetry,
)
from sotrag.app.ordered import OrderedText
from sotrag.app.pipeline import SoTPipeline
from tests.fakes import Pieces, Script, ScriptedEngine, stage_of

UNGUIDED_ONE_POINT = "1. Sleep on a fixed schedule\n\nThat is the main thing; the rest follows from it.\n"
GUIDED = "1. Fixed schedule\n2. Dark room\n3. No caffeine\n"
THINK = "Okay, the user wants tips.\n1. maybe sleep\n2. maybe food\n</think>\n" + GUIDED


class Forgetful(ScriptedEngine):
    """Like vLLM: an aborted request id is forgotten, so a new request may use it again."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self._aborted.discard(request.request_id)
        async for delta in super().generate(request):
            yield delta


def point_text(stage: str) -> str:
    return " word" * 6 + f" end-of-{stage}."


def script(skeleton: str, guided: str = GUIDED, normal: str = "A plain answer.") -> Script:
    def reply(request: GenerationRequest) -> str | Pieces:
        stage = stage_of(request.request_id)
        if stage == "skeleton":
            return Pieces(tuple(skeleton.splitlines(keepends=True)))
        if stage == "skeleton-guided":
            return guided
        if stage == "normal":
            return normal
        return Pieces(tuple(" " + word for word in point_text(stage).split()))  # one word a delta

    return reply


def delay(request: GenerationRequest) -> float:
    return 0.02 if stage_of(request.request_id).startswith("skeleton") else 0.01


def settings(**sot: object) -> Settings:
    base: dict[str, object] = {"eager": True, "min_points": 2, "max_points": 5, "min_words": 1, "max_words": 6}
    return Settings(sot=SoTConfig.model_validate({**base, **sot}))


async def answer(engine: ScriptedEngine, s: Settings) -> tuple[list[Event], AnswerResult]:
    events = [e async for e in SoTPipeline(engine, s).stream("How to sleep better?", mode="sot")]
    last = events[-1]
    assert isinstance(last, AnswerDone)
    return events, last.result


def streamed(events: list[Event]) -> str:
    ordered = OrderedText()
    return "".join(ordered.feed(e) for e in events)


async def test_eager_points_of_a_retried_skeleton_leave_nothing_in_the_next_attempt() -> None:
    engine = Forgetful(script(UNGUIDED_ONE_POINT), delay_s=delay)
    events, result = await answer(engine, settings())
    retry = next(i for i, e in enumerate(events) if isinstance(e, SkeletonRetry))
    assert any(isinstance(e, PointStarted) for e in events[:retry])  # an eager point did start, and was discarded
    after = events[retry:]
    assert sorted(e.index for e in after if isinstance(e, PointDone)) == [1, 2, 3]
    assert [p.title for p in result.points] == ["Fixed schedule", "Dark room", "No caffeine"]
    for p in result.points:
        assert p.text == point_text(f"point{p.index}") and p.finish_reason == "stop"
    assert [e.index for e in events[:retry] if isinstance(e, PointWithdrawn)] == [1]
    assert streamed(events) == result.answer


async def test_a_restarted_point_gets_a_request_id_of_its_own() -> None:
    engine = ScriptedEngine(script(UNGUIDED_ONE_POINT), delay_s=delay)  # remembers aborted ids
    _, result = await answer(engine, settings())
    ids = [r.request_id for r in engine.requests]
    assert len(ids) == len(set(ids))
    assert [stage_of(i) for i in ids] == ["skeleton", "point1", "skeleton-guided", "point1", "point2", "point3"]
    assert all(p.text == point_text(f"point{p.index}") for p in result.points)


async def test_in_order_text_after_an_eager_fallback_is_the_final_answer() -> None:
    engine = ScriptedEngine(script(UNGUIDED_ONE_POINT, normal="Rivers carry minerals to the sea."), delay_s=delay)
    events, result = await answer(engine, settings(skeleton_fallback="normal"))
    assert result.mode == "normal" and any(isinstance(e, PointStarted) for e in events)
    assert streamed(events) == result.answer == "Rivers carry minerals to the sea."


async def test_in_order_text_follows_the_answers_whitespace() -> None:
    points = {"point1": Pieces((": Go to bed at the same time.", "\n")), "point2": Pieces((": Eat vegetables. ",)),
              "point3": Pieces((":\n   - walk\n   - run\n",))}
    engine = ScriptedEngine({"skeleton": "1. Sleep well\n2. Eat well\n3. Move daily\n", **points,
                             "normal": Pieces(("\n\nHere is ", "the answer. ", "\n"))})
    for mode in ("sot", "normal"):
        events = [e async for e in SoTPipeline(engine, settings(eager=False)).stream("q?", mode=mode)]
        last = events[-1]
        assert isinstance(last, AnswerDone)
        assert streamed(events) == last.result.answer


async def test_a_restarted_point_keeps_its_end_cut() -> None:
    """A point's end (the next point's numbering) is cut in its stream under its request id: a restarted point,
    sent under a fresh id, must keep that cut, not run on into the next point's text."""
    base = script(UNGUIDED_ONE_POINT)
    assert callable(base)

    def reply(request: GenerationRequest) -> str | Pieces:
        if stage_of(request.request_id) == "point1":
            return Pieces((" Keep", " the same hours.", "\n2. Dark", " room: this is point two's text."))
        return base(request)

    engine = ScriptedEngine(reply, delay_s=delay)
    _, result = await answer(engine, settings())
    point1 = [r.request_id for r in engine.requests if stage_of(r.request_id) == "point1"]
    assert len(point1) == 2 and point1[0] != point1[1]  # restarted under a fresh id
    assert result.points[0].text == " Keep the same hours.", result.points[0].text
    assert point1[1] in engine.aborted  # the cut aborted the restarted request


async def test_the_tokens_of_a_withdrawn_point_count_as_generated() -> None:
    """The engine wrote them: ``stats.tokens`` counts a withdrawn point's tokens, as it counts a retried
    skeleton's (the scripted engine gives one token a delta: the first skeleton's 3 lines, point 1's 7 words)."""

    def fast_points(request: GenerationRequest) -> float:
        return 0.03 if stage_of(request.request_id).startswith("skeleton") else 0.001

    engine = ScriptedEngine(script(UNGUIDED_ONE_POINT), delay_s=fast_points)
    events, result = await answer(engine, settings())
    assert [e.index for e in events if isinstance(e, PointWithdrawn)] == [1]
    s = result.stats
    first_skeleton, withdrawn_point = len(UNGUIDED_ONE_POINT.splitlines()), len(point_text("point1").split())
    assert s.tokens == s.skeleton_tokens + sum(p.tokens for p in result.points) + first_skeleton + withdrawn_point


async def test_points_the_reader_takes_back_are_withdrawn_aborted_and_restarted() -> None:
    """A lone ``</think>``: the list read before it was reasoning. The eager points started from it are
    withdrawn (their requests aborted while they still run) and the answer has the final skeleton's points."""

    def slow(request: GenerationRequest) -> float:
        return 0.02 if stage_of(request.request_id).startswith("skeleton") else 0.05

    engine = ScriptedEngine(script(THINK), delay_s=slow)
    events, result = await answer(engine, settings())
    done = next(e for e in events if isinstance(e, SkeletonDone))
    assert done.points == ["Fixed schedule", "Dark room", "No caffeine"]
    assert [p.title for p in result.points] == done.points
    assert [e.index for e in events if isinstance(e, PointWithdrawn)] == [1, 2]
    first_ids = [r.request_id for r in engine.requests if stage_of(r.request_id) in ("point1", "point2")][:2]
    assert all(i in engine.aborted for i in first_ids)
    assert all(p.text == point_text(f"point{p.index}") for p in result.points)
    assert "maybe" not in result.answer and streamed(events) == result.answer


async def test_ttft_after_a_guided_retry_is_the_first_skeletons_first_token() -> None:
    def slow_retry(request: GenerationRequest) -> float:
        return 0.1 if stage_of(request.request_id) == "skeleton-guided" else 0.01

    engine = ScriptedEngine(script(UNGUIDED_ONE_POINT), delay_s=slow_retry)
    before = time.perf_counter()
    events, result = await answer(engine, settings(eager=False))
    assert any(isinstance(e, SkeletonRetry) for e in events) and any(isinstance(e, SkeletonDelta) for e in events)
    guided_sent = next(t for rid, t in engine.sent_at if stage_of(rid) == "skeleton-guided")
    assert result.stats.ttft_s is not None
    assert before + result.stats.ttft_s < guided_sent  # users saw the first skeleton stream before the retry


async def test_closing_a_request_stream_aborts_the_request_at_once() -> None:
    """A withdrawn point's stream is closed by its task: the engine hears of it then, not when the garbage
    collector gets to the inner stream."""
    engine = ScriptedEngine("one two three four five six", delay_s=0.001)
    calls = EngineCalls(engine, SamplingConfig())
    request = GenerationRequest(calls.request_id("point1"), "prompt", calls.options(16))
    stream = calls.generate(request, RequestTrace(start_s=0.0))
    await anext(stream)
    await stream.aclose()
    assert engine.aborted == [request.request_id] and engine.num_unfinished_requests() == 0
