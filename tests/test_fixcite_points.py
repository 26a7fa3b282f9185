"""Where a point ends (audit 6 and 7): at another point's start in any numbering style, never before its text; an
empty point is counted. The scripted engine applies the point request's stop strings as vLLM does (the text up
to the first stop string it completes), so what the stop strings and the stream cut do together is tested."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import AnswerResult, PointDelta
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.point_end import PointEnd
from tests.fakes import Pieces, ScriptedEngine, stage_of

SKELETON = "1. Daily practice\n2. Speak early\n3. Listen more\n"
PLAIN = {"point1": ": Practice daily.", "point2": ": Talk to people.", "point3": ": Hear them out."}


def vllm_stops(text: str, stop: tuple[str, ...]) -> str:
    """The text vLLM returns: up to the stop string completed first (the stop string itself left out)."""
    ends = [(i + len(s), i) for s in stop if (i := text.find(s)) >= 0]
    return text[: min(ends)[1]] if ends else text


def engine_for(points: dict[str, str | Pieces]) -> ScriptedEngine:
    def script(request: Any) -> str | Pieces:
        stage = stage_of(request.request_id)
        if stage.startswith("skeleton"):
            return SKELETON
        reply = {**PLAIN, **points}[stage]
        if isinstance(reply, Pieces):  # delta by delta: the stop strings cut the pieces' whole text
            whole = vllm_stops("".join(reply), request.sampling.stop)
            kept, n = [], 0
            for piece in reply:
                kept.append(piece[: max(0, len(whole) - n)])
                n += len(piece)
            return Pieces(tuple(p for p in kept if p))
        return vllm_stops(reply, request.sampling.stop)

    return ScriptedEngine(script)


async def answer(points: dict[str, str | Pieces]) -> tuple[ScriptedEngine, AnswerResult, dict[int, str]]:
    engine = engine_for(points)
    settings = Settings(sot=SoTConfig(min_points=2, max_points=5, min_words=1, max_words=6))
    events = [e async for e in SoTPipeline(engine, settings).stream("How do I learn a language?", mode="sot")]
    streamed: dict[int, str] = {}
    for e in events:
        if isinstance(e, PointDelta):
            streamed[e.index] = streamed.get(e.index, "") + e.text
    return engine, events[-1].result, streamed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "runs_on",
    [
        "\n**2. Speak early**: Talk to people.\n2. Speak early: Talk.",
        "\n2) Speak early: Talk to people.",
        "\n### 2. Speak early\nTalk to people.",
        "\n 2. Speak early: Talk to people.",
        "\r\n\r\n2. Speak early: Talk to people.",
        "\n\nSpeak early: Talk to people.",
        "\nSpeak early: Talk to people.",
        "\n**Speak early**: Talk to people.",
        "\nStep 3: Listen more.",
        "\n1) Another thing to add here.",  # its own number in another style, after its text
        "\n\nA second paragraph.",
    ],
)
async def test_a_point_ends_where_the_model_starts_another_point(runs_on: str) -> None:
    pieces = Pieces((": Practice", " daily.", *re.findall(r"\s*\S+|\s+", runs_on)))
    engine, result, streamed = await answer({"point1": pieces})
    point = result.points[0]
    assert point.text == streamed[1] == ": Practice daily."
    assert point.finish_reason == "stop"
    assert result.answer.splitlines()[0] == "1. Daily practice: Practice daily."
    point1 = next(r.request_id for r in engine.stage_requests("point1"))
    if "\n2. " not in runs_on:  # not one of the literal stop strings: cut in the stream, the request aborted
        assert point1 in engine.aborted


async def test_lines_of_the_point_itself_stay() -> None:
    text = ": Practice daily:\n- read\n- write\nSpeak early birds win.\n2.5 hours a day."
    _, result, _ = await answer({"point1": text})
    assert result.points[0].text == text


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ("\n\nTalk to people.", "\n\nTalk to people."),  # a blank line before its text: cut to '' before
        ("\n2. Speak early: Talk to people.", ": Talk to people."),  # its own title restated: cut to '' before
        ("\n**2. Speak early**: Talk to people.\n\nMore.", ": Talk to people."),
    ],
)
async def test_no_stop_ends_a_point_before_its_text(reply: str, text: str) -> None:
    _, result, streamed = await answer({"point2": reply})
    assert result.points[1].text == streamed[2] == text
    assert result.stats.empty_points == 0
    assert result.answer.splitlines()[1].startswith("2. Speak early")


async def test_an_empty_point_is_counted() -> None:
    _, result, _ = await answer({"point2": "\n3. Listen more: Hear them out.", "point3": ":"})
    assert [p.text for p in result.points[1:]] == ["", ":"]
    assert result.stats.empty_points == 2


async def test_point_requests_stop_at_other_points_only() -> None:
    engine, _, _ = await answer({})
    stops = {stage_of(r.request_id): r.sampling.stop for r in engine.stage_requests("point")}
    assert stops["point2"][:2] == ("\n3. ", "\n**3.")  # the next point first (a remote server takes only 4)
    assert "\n2. " not in stops["point2"] and "\n1. " in stops["point2"] and "\n6. " in stops["point2"]
    assert not any("\n\n" in s for ss in stops.values() for s in ss)  # a blank line: cut only after text


_piece = st.sampled_from(
    [": Practice", " daily.", "\n", "\r\n", "\n\n", " ", "2. ", "**2.**", "1) ", "### 3.", "Speak early", ":", "- walk",
     "Daily practice", "2.5 hours", "Step 3:", "[1]", "x"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_piece, max_size=14).map("".join), st.lists(st.integers(0, 200), max_size=8))
def test_any_chunking_ends_a_point_where_the_whole_text_does(text: str, cuts: list[int]) -> None:
    def read(chunks: list[str]) -> tuple[str, bool]:
        end, out = PointEnd(1, 6, "Daily practice", ["Daily practice", "Speak early", "Listen more"]), ""
        for chunk in chunks:
            piece, ended = end.feed(chunk)
            out += piece
            if ended:
                return out, True
        return out + end.finish(), end.ended

    bounds = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    whole = read([text])
    assert read(chunks)[0] == whole[0]
    assert text.startswith(whole[0]) or not whole[0].strip() or whole[0].lstrip() in text  # only cuts, no rewrite
