"""Citations through the pipeline (scripted engine): each point's markers are read back as they stream, checked
against the passages the point was given, and the events, the result and every surface's view agree.

The CLI, the OpenAI route and the replayed real engine are covered in their own test files."""

from __future__ import annotations

from typing import Any

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import AnswerDone, Event, PointDelta, PointDone, SkeletonDelta
from sotrag.app.fold import AnswerSoFar
from sotrag.app.ordered import OrderedText
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage
from tests.fakes import ListRetriever, Pieces, ScriptedEngine

QUESTION = "How do I keep a FastAPI app secure?"
PASSAGES = [
    Passage(text="Use HTTPS everywhere [7] and keep keys out of code.", source="security.md", heading="HTTPS",
            score=0.9, chunk_id="c1"),
    Passage(text="OAuth2 with password flow and bearer tokens.", source="oauth.pdf", heading="", score=0.8,
            chunk_id="c2", metadata={"page": 3}),
]
SKELETON = "1. Use HTTPS [1]\n2. Check tokens [9]\n3. Rotate keys\n"
POINTS = {
    # valid, then a marker split across deltas, then a repeat: [1] named twice is cited once
    "point1": Pieces((" Serve only over TLS [", "1", "] and redirect", " plain HTTP [1].")),
    # invalid only: removed from the text with the space before it, counted
    "point2": Pieces((" Verify every bearer token [9].", " Expire them [2-3].")),
    # a range and a list: [1, 2] both valid; [12] never names a passage
    "point3": Pieces((" Rotate keys often [1, 2][12].",)),
}


def script(request: Any) -> str | Pieces:
    stage = request.request_id.rsplit("-", 1)[-1]
    if stage.startswith("skeleton"):
        return SKELETON
    if stage == "normal":
        return Pieces(("Use TLS [", "2] and bearer tokens [4", "]."))
    return POINTS[stage]


def pipeline(**settings: Any) -> tuple[ScriptedEngine, SoTPipeline]:
    engine = ScriptedEngine(script)
    s = Settings(sot=SoTConfig(min_points=2, max_points=3, min_words=1, max_words=6), **settings)
    return engine, SoTPipeline(engine, s, retriever=ListRetriever(PASSAGES))


async def events_of(p: SoTPipeline, mode: str = "sot") -> list[Event]:
    return [e async for e in p.stream(QUESTION, mode=mode, top_k=2)]


async def test_point_citations_stream_checked_and_agree_with_the_result() -> None:
    _, p = pipeline()
    events = await events_of(p)
    result = events[-1].result  # type: ignore[union-attr]

    streamed = {i: "" for i in (1, 2, 3)}
    for e in events:
        if isinstance(e, PointDelta):
            streamed[e.index] += e.text
            assert "[9]" not in e.text and "[12]" not in e.text and "[4" not in e.text
            assert not e.text.rstrip().endswith("[")  # never half a marker
    done = {e.index: e for e in events if isinstance(e, PointDone)}

    assert streamed[1] == " Serve only over TLS [1] and redirect plain HTTP [1]."
    assert streamed[2] == " Verify every bearer token. Expire them [2]."  # [9] and 3 name no passage
    assert streamed[3] == " Rotate keys often [1, 2]."
    for point in result.points:
        assert point.text == streamed[point.index] == done[point.index].text
        assert [c.n for c in point.citations] == [c.n for c in done[point.index].citations]
    assert [[c.n for c in p.citations] for p in result.points] == [[1], [2], [1, 2]]
    assert [c.n for c in result.citations] == [1, 2]
    assert result.stats.invalid_citations == 4  # the points' 9, 3 (of 2-3) and 12; the skeleton's 9
    # resolved to the passage: source, heading, chunk, page for a PDF, snippet
    oauth = result.citations[1]
    assert (oauth.source, oauth.chunk_id, oauth.page) == ("oauth.pdf", "c2", 3)
    assert oauth.snippet.startswith("OAuth2")
    assert result.citations[0].page is None
    # a passage whose own text holds "[7]" is only a passage: its markers are never read as citations
    assert "[7]" in result.citations[0].snippet and 7 not in {c.n for c in result.citations}
    # the assembled answer is the text users saw
    assert "[9]" not in result.answer and "[12]" not in result.answer and "[1, 2]" in result.answer


async def test_skeleton_and_titles_never_show_an_invalid_marker() -> None:
    _, p = pipeline()
    events = await events_of(p)
    shown = "".join(e.text for e in events if isinstance(e, SkeletonDelta))
    assert "[1]" in shown and "[9]" not in shown
    result = events[-1].result  # type: ignore[union-attr]
    assert [pt.title for pt in result.points] == ["Use HTTPS [1]", "Check tokens", "Rotate keys"]


async def test_normal_answers_are_read_the_same_way() -> None:
    _, p = pipeline()
    events = await events_of(p, mode="normal")
    result = events[-1].result  # type: ignore[union-attr]
    assert result.answer == "Use TLS [2] and bearer tokens."
    assert [c.n for c in result.citations] == [2] and result.stats.invalid_citations == 1


async def test_without_passages_every_marker_is_invalid() -> None:
    _, p = pipeline()
    events = [e async for e in p.stream(QUESTION, mode="sot", top_k=0)]
    result = events[-1].result  # type: ignore[union-attr]
    assert result.sources == [] and result.citations == []
    assert all("[" not in pt.text for pt in result.points)
    # every number the points wrote: 1, 1 | 9, 2, 3 | 1, 2, 12; and the skeleton's: 1, 9
    assert result.stats.invalid_citations == 10


async def test_the_fold_and_the_ordered_text_agree_with_the_result() -> None:
    _, p = pipeline()
    events = await events_of(p)
    fold, ordered = AnswerSoFar(), OrderedText()
    text = "".join(ordered.feed(e) for e in events if not fold.feed(e))
    result = events[-1].result  # type: ignore[union-attr]
    assert isinstance(events[-1], AnswerDone)
    assert text == result.answer
    assert {i: [c.n for c in cs] for i, cs in fold.citations.items()} == {1: [1], 2: [2], 3: [1, 2]}
