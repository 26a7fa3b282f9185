"""The server app in-process (no subprocess): a server without a document index still answers, ungrounded,
and says so; plus the UI's rendering helpers (escaping, marks, timeline, speed-up) on whole pipeline results.

The answers come from the scripted engine (``tests/fakes.py``): what is tested is the service, the routes and the
UI's views, not the model. Only the start-up heap freeze needs the session's real vLLM engine (it counts the
objects vLLM and torch leave behind).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import (
    AnswerDone,
    PointDelta,
    PointDone,
    PointStarted,
    SkeletonDelta,
    SkeletonDone,
)
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import AnswerRequest
from sotrag.app.serving.app import create_app
from sotrag.app.serving.openai_api import ChatMessageIn, _history
from sotrag.app.serving.ui import DONE_MARK, PENDING_MARK, LiveAnswer, compare_html, md_text, stats_html, timeline_svg
from tests.fakes import ScriptedEngine, sampling

QUESTION = "What are good ways to sleep better at night?"
SETTINGS = Settings(
    sampling=sampling(point_max_tokens=16, point_min_tokens=16, normal_max_tokens=24, normal_min_tokens=24),
    sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
)


@pytest.fixture(scope="module")
async def app_client() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(SETTINGS, pipeline=SoTPipeline(ScriptedEngine(), SETTINGS), ui=False)
    service = app.state.service
    await service.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=120) as client:
        yield client, service
    await service.stop()


async def test_without_an_index_answers_ungrounded_and_says_so(app_client: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = app_client
    ready = (await client.get("/readyz")).json()
    assert ready["ready"] is True and ready["index"] is None

    r = await client.post("/v1/answer", json={"question": QUESTION, "mode": "sot"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["mode"] == "sot" and len(answer["points"]) == 3
    assert answer["grounded"] is False and answer["sources"] == []
    assert "no document index" in answer["grounding_note"]

    r = await client.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "stream": True})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "answer_delta"  # no retrieval, so no sources event
    assert events[-1]["type"] == "answer_done" and events[-1]["result"]["grounded"] is False

    for method, path in (("GET", "/v1/documents"), ("DELETE", "/v1/documents/abc")):
        r = await client.request(method, path)
        assert r.status_code == 404 and "no document index" in r.json()["detail"]
    r = await client.post("/v1/documents", files={"files": ("a.md", b"# A\n\ntext")})
    assert r.status_code == 404 and "no document index" in r.json()["detail"]


def test_ui_timeline_drops_a_withdrawn_point() -> None:
    from sotrag.app.events import PointWithdrawn

    live = LiveAnswer()
    for event in (
        SkeletonDelta(text="1. musing\n"),
        PointStarted(index=1, title="musing"),
        PointDelta(index=1, text=" x"),
        PointWithdrawn(index=1, reason="taken back"),
    ):
        live.feed(event)
    assert not [row for row in live.timeline_rows() if row[1] == "point"], live.timeline_rows()


async def test_ui_views_of_a_whole_answer(app_client: tuple[httpx.AsyncClient, Any]) -> None:
    _, service = app_client
    live = LiveAnswer()
    views: list[str] = []
    async for event in (await service.answer(AnswerRequest(question=QUESTION, mode="sot"), surface="test")).events():
        live.feed(event)
        if isinstance(event, (SkeletonDelta, SkeletonDone, PointStarted, PointDelta, PointDone, AnswerDone)):
            views.append(live.chat_markdown())
    result = live.result
    assert result is not None and result.mode == "sot"
    n = len(result.points)
    # Skeleton first (no marks), then all points pending, then growing, then every point done.
    assert "Skeleton" in views[0] and DONE_MARK not in views[0]
    assert any(v.count(PENDING_MARK) == n and DONE_MARK not in v for v in views)
    assert views[-1].count(DONE_MARK) == n and PENDING_MARK not in views[-1]

    svg = timeline_svg(live.timeline_rows(), result.stats.total_s)
    assert svg.count("tl-bar tl-point") == n and svg.count("tl-bar tl-skeleton") == 1
    stats = stats_html(result, "no document index is configured")
    assert f"data-points='{n}'" in stats and "data-grounded='false'" in stats

    normal = LiveAnswer()
    async for event in (await service.answer(AnswerRequest(question=QUESTION, mode="normal"), surface="test")).events():
        normal.feed(event)
    assert normal.result is not None
    compare = compare_html(result, normal, "normal")
    expected = normal.result.stats.total_s / result.stats.total_s
    assert f"data-speedup='{expected:.3f}'" in compare


@pytest.mark.engine
async def test_start_freezes_the_startup_heap(engine: Any) -> None:
    """Once started, the process's long-lived objects (vLLM, torch, tokenizer, index) are out of the collector's
    reach, so a full collection does not scan ~720k objects (~0.4 s here) while the loop serves answers."""
    import gc

    app = create_app(SETTINGS, pipeline=SoTPipeline(engine, SETTINGS), ui=False)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    service = app.state.service
    await service.start()
    try:
        assert service.state == "ready"
        assert gc.get_freeze_count() > 100_000  # the session engine's process: vLLM and torch are loaded
    finally:
        await service.stop()


def test_model_and_document_text_is_shown_as_text() -> None:
    escaped = md_text("<script>alert(1)</script> **bold** [x](y)\n# h")
    assert "<script>" not in escaped and "&lt;script&gt;" in escaped
    assert "\\*\\*bold\\*\\*" in escaped and "\\[x\\]\\(y\\)" in escaped and "\n" not in escaped
    html = compare_html(None, LiveAnswer(), "normal")
    assert html == ""


def test_openai_history_pairs_user_and_assistant_turns() -> None:
    messages = [
        ChatMessageIn(role="system", content="be brief"),
        ChatMessageIn(role="user", content="q1"),
        ChatMessageIn(role="assistant", content="a1"),
        ChatMessageIn(role="user", content=[{"type": "text", "text": "q2"}]),  # type: ignore[list-item]
        ChatMessageIn(role="assistant", content="a2"),
    ]
    assert _history(messages) == [("q1", "a1"), ("q2", "a2")]
