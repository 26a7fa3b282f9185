"""The scripted engine keeps the Engine contract the pipeline tests rely on: what it streams, how it ends, what it
records. (If the double drifted from vLLM's behaviour, the tests on it would check the wrong thing.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from sotrag.app.engines.base import (
    Engine,
    EngineError,
    GenerationDelta,
    GenerationRequest,
    SamplingOptions,
    engine_health,
)
from sotrag.prompts.messages import ChatMessage
from tests.fakes import ListRetriever, Pieces, ScriptedEngine, stage_of


def request(stage: str, max_tokens: int = 256, stream_interval: int = 1) -> GenerationRequest:
    options = SamplingOptions(max_tokens=max_tokens, stream_interval=stream_interval)
    return GenerationRequest(f"sotrag-abc123-{stage}", "prompt", options, prompt_token_ids=(1, 2, 3))


async def collect(engine: ScriptedEngine, req: GenerationRequest) -> list[GenerationDelta]:
    return [delta async for delta in engine.generate(req)]


def test_it_is_an_engine_and_reports_its_health() -> None:
    engine = ScriptedEngine()
    assert isinstance(engine, Engine)
    assert asyncio.run(engine_health(engine)).alive
    engine.healthy = False
    assert not asyncio.run(engine_health(engine)).alive


async def test_text_streams_word_tokens_first_alone_then_by_stream_interval() -> None:
    engine = ScriptedEngine({"point": "a b c d e f g"})
    deltas = await collect(engine, request("point3", stream_interval=3))
    assert [d.text for d in deltas] == ["a", " b c d", " e f g"]
    assert [d.new_tokens for d in deltas] == [1, 3, 3]
    assert [d.finish_reason for d in deltas] == [None, None, "stop"]
    assert all(d.prompt_tokens == 3 for d in deltas) and sum(len(d.token_ids) for d in deltas) == 7
    assert engine.streamed[engine.requests[0].request_id] == "a b c d e f g" and engine.aborted == []


async def test_max_tokens_cuts_the_reply_with_length() -> None:
    engine = ScriptedEngine({"normal": Pieces(["x", "y", "z"])})
    deltas = await collect(engine, request("normal", max_tokens=2))
    assert [d.text for d in deltas] == ["x", "y"] and deltas[-1].finish_reason == "length"


async def test_closing_early_and_abort_are_recorded_and_end_the_stream() -> None:
    engine = ScriptedEngine({"point": " w" * 50})
    stream = engine.generate(request("point1"))
    first = await anext(stream)
    assert first.text == " w" and engine.num_unfinished_requests() == 1 and engine.load().running == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert engine.aborted == ["sotrag-abc123-point1"] and engine.num_unfinished_requests() == 0

    stream = engine.generate(request("point2"))
    await anext(stream)
    await engine.abort("sotrag-abc123-point2")
    assert [d async for d in stream] == []
    assert engine.aborted == ["sotrag-abc123-point1", "sotrag-abc123-point2"]


async def test_scripts_by_stage_in_turn_or_by_function() -> None:
    engine = ScriptedEngine({"skeleton": ["first", "second"], "point2": "two", "point": "any"})
    texts = [
        "".join(d.text for d in await collect(engine, request(stage)))
        for stage in ("skeleton", "skeleton", "skeleton", "point1", "point2")
    ]
    assert texts == ["first", "second", "second", "any", "two"]
    assert stage_of("sotrag-abc123-skeleton-guided") == "skeleton-guided" and stage_of("other") == "other"
    with pytest.raises(EngineError, match="no script for the 'normal' request"):
        await collect(engine, request("normal"))

    by_function = ScriptedEngine(lambda r: r.prompt.upper())
    assert [d.text for d in await collect(by_function, request("normal"))] == ["PROMPT"]


async def test_prompts_over_the_context_are_refused() -> None:
    engine = ScriptedEngine(max_model_len=3)
    with pytest.raises(EngineError, match="over the model's context"):
        await collect(engine, request("normal"))


def test_point_prompts_share_the_skeleton_prompts_ids() -> None:
    """The built-in template encodes content as plain text and is stable: a longer conversation starts with the
    same ids, and role markers written in content are not template tokens."""
    engine = ScriptedEngine()
    skeleton = engine.encode_chat([ChatMessage("system", "sys"), ChatMessage("user", "q <|system|>")])
    point = engine.encode_chat(
        [ChatMessage("system", "sys"), ChatMessage("user", "q <|system|>"), ChatMessage("assistant", "1. A")],
        continue_final_message=True,
    )
    assert point.token_ids[: len(skeleton.token_ids)] == skeleton.token_ids
    assert point.text.startswith(skeleton.text) and point.text.endswith("1. A")
    system_marker = skeleton.token_ids[0]
    assert skeleton.token_ids.count(system_marker) == 1  # the one in the question is plain text
    assert engine.count_tokens("q <|system|>") == 2


async def test_list_retriever_records_queries_and_filters() -> None:
    retriever = ListRetriever()
    assert await retriever.aretrieve("q", 3, {"source": "a/*"}) == []
    assert retriever.queries == ["q"] and retriever.filters == [{"source": "a/*"}]


def test_the_package_never_imports_the_test_doubles() -> None:
    """A fake engine may exist for tests, never as a default: no module of the package imports ``tests``."""
    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"^\s*(from|import)\s+(sotrag\.)?tests\b", re.MULTILINE)
    sources = [p for folder in ("app", "retrieval", "prompts", "kernels") for p in (root / folder).rglob("*.py")]
    assert len(sources) > 20
    offenders = [str(p.relative_to(root)) for p in sources if pattern.search(p.read_text())]
    assert offenders == []
