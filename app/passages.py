"""The passages one answer is grounded in: retrieved once for the question, fitted to the context budget,
numbered as the sources the model may cite; and, with per-point retrieval, more for each point.

Why here and not in ``retrieval/``: the budget is counted in the engine's tokens, and the numbering is what the
prompts (``sotrag.prompts.build``) and the answer's ``sources`` share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter

from sotrag.app.config import PointQuery, SoTConfig
from sotrag.app.engines.base import Engine, count_tokens_async
from sotrag.app.events import Source
from sotrag.app.request import MIN_ANSWER_TOKENS
from sotrag.prompts import build as prompts
from sotrag.prompts import templates
from sotrag.retrieval.types import Passage, Retriever

TEMPLATE_TOKENS_PER_MESSAGE = 8  # a chat template's role markers and separators around one message (ChatML: 5)
TITLE_TOKENS = 48  # a point's open "i. title" (titles are cut at 120 characters)


async def passage_budget(
    engine: Engine,
    question: str,
    history: Sequence[tuple[str, str]],
    *,
    share: float,
    skeleton_tokens: int,
    sot: SoTConfig,
) -> int:
    """Tokens the passages may take: ``share`` of the model's context, and never so many that the answer's longest
    prompt, a point's, leaves fewer than ``MIN_ANSWER_TOKENS`` to write. A point's prompt carries, besides the
    passages: the grounded instruction, the history, the question with the skeleton instruction, the skeleton (at
    most ``skeleton_tokens``), the point's instruction and its open title. Without this a long history and full
    passages made a point's prompt longer than the context part-way through an answer."""
    count = [
        await count_tokens_async(engine, text)
        for text in (
            prompts.grounded_instruction(),
            prompts.skeleton_user_text(
                question,
                min_points=sot.min_points,
                max_points=sot.max_points,
                min_words=sot.min_words,
                max_words=sot.max_words,
            ),
            templates.POINT_INSTRUCTION.format(index=sot.max_points, sentences=sot.point_sentences),
            *(prompts.as_data(text) for turn in history for text in turn),
        )
    ]
    messages = 5 + 2 * len(history)  # system, history, skeleton request, skeleton, point instruction, open title
    used = sum(count) + messages * TEMPLATE_TOKENS_PER_MESSAGE + skeleton_tokens + TITLE_TOKENS + MIN_ANSWER_TOKENS
    return max(0, min(int(engine.max_model_len * share), engine.max_model_len - used))


def source_of(n: int, passage: Passage) -> Source:
    return Source(
        n=n,
        source=passage.source,
        heading=passage.heading,
        score=passage.score,
        snippet=passage.text[:300],
        chunk_id=passage.chunk_id,
        page=_page(passage),
    )


def _page(passage: Passage) -> int | None:
    page = passage.metadata.get("page")
    return int(page) if isinstance(page, int) or (isinstance(page, str) and page.isdigit()) else None


@dataclass
class Grounding:
    """The answer's passages and sources so far."""

    passages: list[Passage] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    dropped: int = 0  # retrieved passages that did not fit the budget
    seconds: float = 0.0
    room: int | None = None  # tokens of the budget the shared passages left for a point's own; None: not counted
    _extra_numbers: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def retrieve(
        cls,
        retriever: Retriever,
        engine: Engine,
        question: str,
        k: int,
        filters: dict[str, str] | None,
        budget: int,
    ) -> Grounding:
        """The question's top ``k`` passages that fit ``budget`` tokens, numbered 1..n in rank order."""
        start = perf_counter()
        found = await retriever.aretrieve(question, k, filters)
        seconds = perf_counter() - start
        passages, used = await fit(engine, found, budget)
        sources = [source_of(i, p) for i, p in enumerate(passages, start=1)]
        return cls(passages, sources, len(found) - len(passages), seconds, room=budget - used)

    def numbers(self) -> set[int]:
        """The numbers a citation may name now: every source given to the model so far."""
        return {s.n for s in self.sources}

    def cite(self, numbers: Sequence[int]) -> list[Source]:
        """The sources ``numbers`` name, in that order (numbers naming none are left out)."""
        by_number = {s.n: s for s in self.sources}
        return [by_number[n] for n in numbers if n in by_number]

    async def for_point(
        self,
        retriever: Retriever,
        question: str,
        title: str,
        k: int,
        filters: dict[str, str] | None = None,
        query: PointQuery = "question_title",
        engine: Engine | None = None,
    ) -> list[tuple[int, Passage]]:
        """Up to ``k`` passages for one point not already given, numbered after the shared ones. They go after
        the shared prompt prefix, so that prefix stays shared by every point. ``query``: search for the question
        and the point's title, or for the title alone (``Settings.per_point_query``). ``filters`` are the
        question's: a point never cites a document the request left out.

        The search asks for ``k`` more than the shared passages: with the question in the point's query the
        shared passages often rank first, and a shallower search would leave the point fewer than ``k`` new ones
        (``benchmarks/grounding.py`` counts them). With ``engine``, they also fit the ``room`` the shared passages
        left in the answer's budget (counted in its tokens, as :func:`fit` does), so a point's prompt never holds
        more passages than the budget allows, whatever ``k``."""
        text = title if query == "title" else f"{question} {title}"
        found = await retriever.aretrieve(text, k + len(self.passages), filters)
        known = {p.chunk_id or p.text for p in self.passages}
        fresh: list[tuple[int, Passage]] = []
        room = self.room if engine is not None else None
        for passage in found:
            key = passage.chunk_id or passage.text
            if key in known:
                continue
            if room is not None and engine is not None:
                n = self._extra_numbers.get(key, len(self.sources) + 1)
                cost = await count_tokens_async(engine, prompts.format_passage(n, passage)) + 2
                if cost > room:
                    continue
                room -= cost
            if key not in self._extra_numbers:
                self._extra_numbers[key] = len(self.sources) + 1
                self.sources.append(source_of(self._extra_numbers[key], passage))
            fresh.append((self._extra_numbers[key], passage))
            if len(fresh) == k:
                break
        return fresh


async def fit(engine: Engine, found: list[Passage], budget: int) -> tuple[list[Passage], int]:
    """The passages, in order, whose tokens (plus 2 each for their separators) fit ``budget``, and those tokens.

    First one count of the whole system text, as every prompt of the answer will carry it: when all passages fit
    (the usual case) that is the only tokenization of the passages, and the engine's content cache hands its ids
    to the skeleton and point prompts. Only when they do not all fit is each passage counted on its own, and the
    first ones that fit kept (``benchmarks/pipeline_cpu.py --tokenizer`` measures the difference)."""
    if not found:
        return [], 0
    whole = await count_tokens_async(engine, prompts.system_message(found).content)
    instruction = await count_tokens_async(engine, prompts.grounded_instruction())
    if whole - instruction + 2 * len(found) <= budget:
        return list(found), whole - instruction + 2 * len(found)
    kept: list[Passage] = []
    used = 0
    for passage in found:
        cost = await count_tokens_async(engine, prompts.format_passage(len(kept) + 1, passage)) + 2
        if used + cost <= budget:
            used += cost
            kept.append(passage)
    return kept, used
