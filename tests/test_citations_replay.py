"""Citations on the real engine: the tiny model, made to write a recorded real answer whose points end with
citation markers (``tests/replay_support.py``: ``[1]``, ``[9]`` which names no passage, ``[1, 2]``), through the
unchanged pipeline, then through the OpenAI route (read with the ``openai`` client) and the CLI's view.

The markers arrive as the tokenizer cuts them (``[``, ``1``, ``]`` are separate tokens of the tiny BPE), so a
marker split across deltas is what the real engine streams here."""

from __future__ import annotations

import io
from typing import Any

import httpx
import openai
import pytest
from rich.console import Console

from sotrag.app.cli.ask import AnswerView
from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.events import AnswerDone, PointDelta
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.serving.app import create_app
from sotrag.retrieval.types import Passage
from tests.fakes import ListRetriever
from tests.replay_support import CITED_QUESTION

pytestmark = pytest.mark.engine

SETTINGS = Settings(
    sampling=SamplingConfig(temperature=0.0, skeleton_max_tokens=1000, point_max_tokens=600, normal_max_tokens=1500),
    sot=SoTConfig(max_points=10, max_words=50, skeleton_fallback="normal"),
)
PASSAGES = [
    Passage(text="Open a letter with the reader's title.", source="letters.md", heading="Salutation", chunk_id="a"),
    Passage(text="Close by offering to answer questions.", source="guide.pdf", chunk_id="b", metadata={"page": 2}),
]


def pipeline(engine: Any) -> SoTPipeline:
    return SoTPipeline(engine, SETTINGS, retriever=ListRetriever(PASSAGES))


async def test_replayed_markers_become_checked_citations_on_every_surface(replay_engine: Any) -> None:
    events = [e async for e in pipeline(replay_engine).stream(CITED_QUESTION, mode="sot", top_k=2)]
    assert isinstance(events[-1], AnswerDone)
    result = events[-1].result
    assert [[c.n for c in p.citations] for p in result.points] == [[1], [], [1, 2]]
    assert result.points[0].text.endswith("Dr. [1]") and result.points[2].text.endswith("questions. [1, 2]")
    assert result.points[1].text.endswith("the student.")  # " [9]" went, with its space
    assert result.stats.invalid_citations == 1
    assert [(c.source, c.page) for c in result.citations] == [("letters.md", None), ("guide.pdf", 2)]
    streamed = "".join(e.text for e in events if isinstance(e, PointDelta))
    assert "[9" not in streamed and "9]" not in streamed

    view = AnswerView(Console(file=io.StringIO(), width=300), auto_refresh=False)
    for e in events:
        view.update(e)
    view.finish()
    shown = view.console.file.getvalue()  # type: ignore[attr-defined]
    assert "sources: [1] letters.md > Salutation; [2] guide.pdf, p. 2" in shown and "[9]" not in shown

    app = create_app(SETTINGS, pipeline=pipeline(replay_engine), ui=False)
    await app.state.service.start()
    try:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=300)
        client = openai.AsyncOpenAI(
            base_url="http://127.0.0.1/v1", api_key="unused", max_retries=0, http_client=http  # type: ignore[arg-type]
        )
        completion = await client.chat.completions.create(
            model="sotrag-sot", messages=[{"role": "user", "content": CITED_QUESTION}]
        )
        extension = (completion.model_extra or {})["sotrag"]
        assert [[c["n"] for c in p["citations"]] for p in extension["points"]] == [[1], [], [1, 2]]
        assert [c["source"] for c in extension["citations"]] == ["letters.md", "guide.pdf"]
        assert completion.choices[0].message.content == result.answer
        await http.aclose()
    finally:
        await app.state.service.stop()
