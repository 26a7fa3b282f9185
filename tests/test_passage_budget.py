"""The passages' budget leaves room for every prompt of the answer (``passages.passage_budget``): with a long
history, full passages used to make a prompt longer than the model's context part-way through an answer, which
then ended in the engine's error. Real vLLM (the session's tiny engine, 2048 tokens of context)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage
from tests.fakes import ListRetriever, sampling

if TYPE_CHECKING:
    from sotrag.app.engines.vllm import VLLMEngine

pytestmark = pytest.mark.engine

PASSAGES = [
    Passage(text=f"({i}) " + "Keep the bedroom dark and cool. " * 30, source=f"sleep/{i}.md", score=1.0 - i / 10)
    for i in range(4)
]
TURN = ("Earlier question: " + "how do I rest well at night " * 25, "Earlier answer: " + "sleep at regular hours " * 30)


@pytest.mark.parametrize("turns", [1, 2])
@pytest.mark.parametrize("mode", ["sot", "normal"])
async def test_a_long_history_and_full_passages_leave_every_prompt_inside_the_context(
    engine: VLLMEngine, turns: int, mode: str
) -> None:
    settings = Settings(
        sampling=sampling(skeleton_max_tokens=64, point_max_tokens=16, normal_max_tokens=16),
        sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
    )
    pipeline = SoTPipeline(engine, settings, retriever=ListRetriever(PASSAGES))
    result = await pipeline.run("How can I sleep better?", mode=mode, history=[TURN] * turns, top_k=4)
    kept = len(result.sources)
    assert result.stats.passages_dropped == len(PASSAGES) - kept
    if turns == 1:  # room for some of them, not all
        assert 1 <= kept < len(PASSAGES)
    else:  # the history leaves no room for any
        assert kept == 0
    assert result.answer
    assert engine.num_unfinished_requests() == 0
