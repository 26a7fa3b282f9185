"""Per-point retrieval keeps to the request: a point's own passages obey the question's filters.

On the scripted engine (no model): the retriever is a list that honours ``filters`` the way the index does, so a
per-point query made without them would bring in a document the request left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import AnswerDone
from sotrag.app.passages import Grounding, source_of
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage
from tests.fakes import ListRetriever, PerPointRetriever, ScriptedEngine, sampling

QUESTION = "What are good ways to sleep better at night?"
WANTED = {"folder": "sleep"}


def passage(source: str, chunk_id: str, folder: str) -> Passage:
    return Passage(text=f"Text of {source}.", source=source, chunk_id=chunk_id, metadata={"folder": folder})


class FilteringRetriever(ListRetriever):
    """Every query gets the passages whose metadata match ``filters`` (all of them without filters)."""

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.queries.append(query)
        self.filters.append(filters)
        kept = [p for p in self.passages if all(p.metadata.get(f) == v for f, v in (filters or {}).items())]
        return kept[:k]


def corpus() -> list[Passage]:
    # An unwanted document ranks between the wanted ones: unfiltered, per-point retrieval would pick it.
    return [
        passage("room.md", "c1", "sleep"),
        passage("coffee.md", "c2", "diet"),
        passage("light.md", "c3", "sleep"),
        passage("sport.md", "c4", "sleep"),
    ]


def per_point_settings(**kw: Any) -> Settings:
    """Three guided points with per-point retrieval on, plus ``kw``."""
    return Settings(
        sampling=sampling(point_max_tokens=24, point_min_tokens=12, normal_max_tokens=48),
        sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4, guided_skeleton=True),
        per_point_retrieval=True,
        **kw,
    )


async def test_per_point_queries_carry_the_question_filters_into_the_prompts_and_sources() -> None:
    engine = ScriptedEngine()
    retriever = FilteringRetriever(corpus())
    settings = per_point_settings(per_point_k=2)
    pipeline = SoTPipeline(engine, settings, retriever=retriever)
    events = [e async for e in pipeline.stream(QUESTION, mode="sot", top_k=1, filters=WANTED)]
    assert isinstance(events[-1], AnswerDone)
    result = events[-1].result

    assert retriever.queries[0] == QUESTION
    assert sorted(retriever.queries[1:]) == [f"{QUESTION} Point number {w}" for w in ("one", "three", "two")]
    assert retriever.filters == [WANTED] * 4
    assert [s.source for s in result.sources] == ["room.md", "light.md", "sport.md"]
    for request in engine.requests:
        assert "coffee.md" not in request.prompt


async def test_for_point_without_filters_still_searches_everything() -> None:
    retriever = FilteringRetriever(corpus())
    grounding = Grounding(passages=corpus()[:1])  # room.md is shared already: not given again
    extra = await grounding.for_point(retriever, QUESTION, "Cut the coffee", 2)
    assert retriever.filters == [None]
    assert [p.source for _, p in extra] == ["coffee.md", "light.md"]


async def test_for_point_numbers_each_new_passage_once_across_points() -> None:
    shared = corpus()[:1]
    retriever = FilteringRetriever(corpus())
    grounding = Grounding(passages=list(shared))
    grounding.sources = [source_of(1, shared[0])]
    first = await grounding.for_point(retriever, QUESTION, "a", 2, WANTED)
    second = await grounding.for_point(retriever, QUESTION, "b", 2, WANTED)
    assert numbered(first) == numbered(second) == [(2, "light.md"), (3, "sport.md")]
    assert [(s.n, s.source) for s in grounding.sources] == [(1, "room.md"), (2, "light.md"), (3, "sport.md")]


def numbered(extra: Sequence[tuple[int, Passage]]) -> list[tuple[int, str]]:
    return [(n, p.source) for n, p in extra]


async def test_for_point_finds_k_new_passages_when_the_shared_ones_rank_first() -> None:
    shared = [passage(f"shared{i}.md", f"s{i}", "sleep") for i in range(5)]
    own = [passage(f"own{i}.md", f"o{i}", "sleep") for i in range(3)]
    retriever = FilteringRetriever([*shared, *own])  # every query ranks the shared passages first
    grounding = Grounding(passages=list(shared), sources=[source_of(i, p) for i, p in enumerate(shared, 1)])
    extra = await grounding.for_point(retriever, QUESTION, "Keep a schedule", 2)
    assert numbered(extra) == [(6, "own0.md"), (7, "own1.md")]


async def test_per_point_query_title_searches_for_each_title_alone() -> None:
    engine = ScriptedEngine()
    retriever = FilteringRetriever(corpus())
    settings = per_point_settings(per_point_query="title")
    pipeline = SoTPipeline(engine, settings, retriever=retriever)
    events = [e async for e in pipeline.stream(QUESTION, mode="sot", top_k=1)]
    assert isinstance(events[-1], AnswerDone)
    assert retriever.queries[0] == QUESTION
    assert sorted(retriever.queries[1:]) == [f"Point number {w}" for w in ("one", "three", "two")]
    assert Settings().per_point_query == "question_title"


async def test_a_points_own_passages_fit_the_room_the_shared_ones_left_in_the_budget() -> None:
    """With per_point_k large, a point's own passages used to come on top of a full budget and could push its
    prompt past the model's context (the scripted engine refuses such a prompt, as vLLM does)."""
    engine = ScriptedEngine(max_model_len=2048)
    words = "sleep needs a cool dark quiet room and a fixed time "
    shared = [Passage(text=words * 75, source="room.md", chunk_id="c1")]
    extra = [
        Passage(text=words * 50, source="big1.md", chunk_id="c2"),
        Passage(text=words * 50, source="big2.md", chunk_id="c3"),
        Passage(text="Morning light sets the body clock.", source="light.md", chunk_id="c4"),
    ]
    settings = per_point_settings(per_point_k=3, context_share=0.5)
    budget = int(engine.max_model_len * settings.context_share)
    assert engine.count_tokens(shared[0].text) < budget < engine.count_tokens(shared[0].text + extra[0].text)
    pipeline = SoTPipeline(engine, settings, retriever=PerPointRetriever(QUESTION, shared, extra))
    events = [e async for e in pipeline.stream(QUESTION, mode="sot", top_k=1)]
    assert isinstance(events[-1], AnswerDone)
    result = events[-1].result

    assert [(s.n, s.source) for s in result.sources] == [(1, "room.md"), (2, "light.md")]
    _, *points = engine.requests
    assert len(points) == 3
    for request in points:
        assert 'source="light.md"' in request.prompt and "big1.md" not in request.prompt


async def test_for_point_without_an_engine_does_not_count() -> None:
    shared = [passage("room.md", "c1", "sleep")]
    grounding = Grounding(passages=list(shared), sources=[source_of(1, shared[0])], room=0)
    extra = await grounding.for_point(FilteringRetriever(corpus()), QUESTION, "a", 1)
    assert numbered(extra) == [(2, "coffee.md")]
