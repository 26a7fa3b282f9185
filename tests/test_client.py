"""The library surfaces: the synchronous ``SoTRAG`` client (own engine loop thread), cross-loop ``astream``,
and the LangChain Runnable. These start a second real engine, bound to the client's own loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sotrag.app.client import SoTRAG
from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import AnswerDone, PointDelta, SkeletonDone
from sotrag.app.runnable import SoTRunnable
from tests.conftest import tiny_engine_config
from tests.fakes import sampling

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[SoTRAG]:
    settings = Settings(
        engine=tiny_engine_config(tiny_model_dir),
        sampling=sampling(seed=7, point_max_tokens=16, normal_max_tokens=24),
        sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
        default_mode="sot",  # these tests are about SoT; every call below that names no mode gets it
    )
    with SoTRAG(settings) as qa:
        yield qa


def test_sync_answer_and_stream(client: SoTRAG) -> None:
    result = client.answer("How do I make good coffee?")
    assert result.mode == "sot" and len(result.points) == 3
    events = list(client.stream("How do I make good coffee?", mode="normal"))
    assert isinstance(events[-1], AnswerDone) and events[-1].result.mode == "normal"


def test_runnable_invoke_and_stream_give_the_assembled_answer(client: SoTRAG) -> None:
    runnable = SoTRunnable(client)
    answer = runnable.invoke({"question": "How do I make good coffee?"})
    assert answer.startswith("1. ")
    chunks = list(runnable.stream("How do I make good coffee?"))
    assert len(chunks) > 1
    streamed = "".join(chunks)
    # reading order: point 1, then 2, then 3
    assert streamed.index("1. ") < streamed.index("\n2. ") < streamed.index("\n3. ")


async def test_runnable_astream_and_early_close_in_another_loop(client: SoTRAG) -> None:
    runnable = SoTRunnable(client)
    chunks = [chunk async for chunk in runnable.astream("How do I make good coffee?")]
    assert "".join(chunks).startswith("1. ")

    slow = client.settings.sampling.model_copy(update={"point_max_tokens": 300, "point_min_tokens": 300})
    stream = client.astream("How do I make good coffee?", sampling=slow)
    saw_point = False
    async for event in stream:
        if isinstance(event, SkeletonDone):
            continue
        if isinstance(event, PointDelta):
            saw_point = True
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert saw_point
    pipeline = client.start()
    assert pipeline.engine.num_unfinished_requests() == 0  # type: ignore[attr-defined]
