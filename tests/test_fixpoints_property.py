"""Property: whatever the skeleton, the timing and the mode, the answer's events tell one consistent story.

Random skeleton texts (a reasoning block closed by a lone ``</think>``, too few points, a closing), a guided retry
or a fallback, eager on or off, point and normal texts with stray whitespace, and random delays per request (so
the events interleave differently), all on the scripted engine. For every answer:
- the in-order text (``OrderedText``: OpenAI chunks, LangChain stream) is only ever appended to, and ends equal
  to the final answer;
- every started point ends with ``point_done`` or is reported withdrawn (``point_withdrawn``), a point's
  ``point_done`` text is what its deltas streamed, nothing is live across a retry or a fallback, and the points
  done and not withdrawn are the answer's points;
- no request id is sent twice, and no request is left running.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.engines.base import GenerationRequest
from sotrag.app.events import (
    AnswerDone,
    Event,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    PointWithdrawn,
    SkeletonDone,
    SkeletonRetry,
)
from sotrag.app.ordered import OrderedText
from sotrag.app.pipeline import SoTPipeline
from tests.fakes import Pieces, ScriptedEngine, stage_of

TITLES = ["Sleep early", "Eat greens", "Walk daily", "Read books", "Drink water", "Call friends"]
PIECES = [" word", ".", "\n", " ", "  ", ":", "\n - sub", "\t", " end"]


def numbered(titles: list[str]) -> str:
    return "".join(f"{i}. {t}\n" for i, t in enumerate(titles, start=1))


titles = st.lists(st.sampled_from(TITLES), max_size=4)
texts = st.lists(st.sampled_from(PIECES), max_size=6).map(lambda p: Pieces(tuple(p)))


@st.composite
def skeletons(draw: st.DrawFn) -> str:
    text = ""
    if draw(st.booleans()):  # reasoning, closed by a lone </think>: what came before it is not the list
        text += "Let me think.\n" + numbered(draw(titles)) + "</think>\n"
    text += numbered(draw(titles))
    if draw(st.booleans()):
        text += "\nThat is the whole plan, in short.\nNothing more to add here.\n"
    return text


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    skeleton = draw(skeletons())
    chunk = draw(st.integers(1, 9))
    return {
        "eager": draw(st.booleans()),
        "fallback": draw(st.sampled_from(["guided", "normal"])),
        "skeleton": Pieces(tuple(skeleton[i : i + chunk] for i in range(0, len(skeleton), chunk))),
        "guided": numbered(draw(titles)),
        "points": {f"point{i}": draw(texts) for i in range(1, 6)},
        "normal": draw(texts),
        "delays": {s: draw(st.sampled_from([0.0, 0.001, 0.003])) for s in ("skeleton", "point", "normal")},
    }


def engine_for(case: dict[str, Any]) -> ScriptedEngine:
    def reply(request: GenerationRequest) -> str | Pieces:
        stage = stage_of(request.request_id)
        if stage == "skeleton-guided":
            return str(case["guided"])
        if stage in ("skeleton", "normal"):
            return Pieces(case[stage])
        return Pieces(case["points"][stage])

    def delay(request: GenerationRequest) -> float:
        return float(case["delays"][stage_of(request.request_id).split("-")[0].rstrip("0123456789")])

    return ScriptedEngine(reply, delay_s=delay)


def check_points(events: list[Event]) -> None:
    """Every started point ends done or withdrawn; nothing live across a retry or a fallback; the answer's
    points are those done and not withdrawn, with the text their deltas streamed."""
    state: dict[int, str] = {}
    streamed: dict[int, str] = {}
    done_text: dict[int, str] = {}
    for event in events:
        if isinstance(event, PointStarted):
            assert state.get(event.index, "withdrawn") == "withdrawn", event
            state[event.index], streamed[event.index] = "open", ""
        elif isinstance(event, PointDelta):
            assert state[event.index] == "open"
            streamed[event.index] += event.text
        elif isinstance(event, PointDone):
            assert state[event.index] == "open"
            assert event.text == streamed[event.index]
            state[event.index], done_text[event.index] = "done", event.text
        elif isinstance(event, PointWithdrawn):
            assert state[event.index] in ("open", "done")
            state[event.index] = "withdrawn"
        elif isinstance(event, SkeletonRetry | FallbackEvent | SkeletonDone):
            if not isinstance(event, SkeletonDone):
                assert set(state.values()) <= {"withdrawn"}, event
            else:  # the started points are the first of the skeleton's
                live = sorted(i for i, s in state.items() if s != "withdrawn")
                assert live == list(range(1, len(live) + 1)) and len(live) <= len(event.points)
    last = events[-1]
    assert isinstance(last, AnswerDone)
    assert set(state.values()) <= {"done", "withdrawn"}
    kept = sorted(i for i, s in state.items() if s == "done")
    assert [p.index for p in last.result.points] == kept
    assert [p.text for p in last.result.points] == [done_text[i] for i in kept]
    if last.result.mode == "sot":
        done = [e for e in events if isinstance(e, SkeletonDone)][-1]
        assert [p.title for p in last.result.points] == done.points


async def run(case: dict[str, Any]) -> None:
    engine = engine_for(case)
    sot = SoTConfig(
        eager=case["eager"], skeleton_fallback=case["fallback"], min_points=2, max_points=5, min_words=1, max_words=6
    )
    events = [e async for e in SoTPipeline(engine, Settings(sot=sot)).stream("How to live well?", mode="sot")]
    check_points(events)
    ordered, text = OrderedText(), ""
    answer = events[-1].result.answer  # type: ignore[union-attr]
    for event in events:
        text += ordered.feed(event)
        assert answer.startswith(text), (text, answer)  # never shows what the answer does not have
    assert text == answer
    ids = [r.request_id for r in engine.requests]
    assert len(ids) == len(set(ids))
    assert engine.num_unfinished_requests() == 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_events_stream_and_answer_agree(case: dict[str, Any]) -> None:
    asyncio.run(run(case))
