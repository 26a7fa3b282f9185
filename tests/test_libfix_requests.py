"""Keyword fields are validated however the request is built: a prebuilt ``AnswerRequest`` plus keywords skipped
every check (``model_copy``), so ``passages_k=-5`` answered and ``mode="zzz"`` ran the whole answer before failing;
bad keywords alone raised pydantic's multi-line report. Both are now ``InvalidQuestion`` in one line naming the
field, before the engine is asked anything."""

from __future__ import annotations

from typing import Any

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.pipeline import AnswerRequest, InvalidQuestion, SoTPipeline
from tests.fakes import ScriptedEngine, default_skeleton, sampling

BAD = [
    ({"passages_k": -5}, "passages_k"),
    ({"mode": "zzz"}, "mode"),
    ({"mode": "fast"}, "mode"),
    ({"bogus": 1}, "bogus"),
    ({"sampling": {"temperature": -1}}, "sampling.temperature"),
    ({"top_k": -1}, "passages_k"),
    ({"history": "notalist"}, "history"),
]


def _pipeline() -> tuple[SoTPipeline, ScriptedEngine]:
    engine = ScriptedEngine({"skeleton": default_skeleton(3), "point": " w" * 8, "normal": " w" * 8})
    s = Settings(sampling=sampling(point_max_tokens=4, normal_max_tokens=4),
                 sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4), passages_k=0)
    return SoTPipeline(engine, s), engine


@pytest.mark.parametrize("prebuilt", [True, False])
@pytest.mark.parametrize(("fields", "field"), BAD)
async def test_bad_fields_are_one_line_invalid_question_before_any_work(
    prebuilt: bool, fields: dict[str, Any], field: str
) -> None:
    pipeline, engine = _pipeline()
    question: AnswerRequest | str = AnswerRequest(question="How?") if prebuilt else "How?"
    with pytest.raises(InvalidQuestion) as caught:
        await pipeline.run(question, **fields)
    message = str(caught.value)
    assert message.startswith(f"{field}: ") and "\n" not in message and "pydantic" not in message
    assert engine.requests == []  # refused before the engine was asked anything


async def test_the_same_error_as_building_the_request_with_those_values() -> None:
    pipeline, _ = _pipeline()
    with pytest.raises(InvalidQuestion) as merged:
        pipeline.request(AnswerRequest(question="How?"), passages_k=-5)
    with pytest.raises(InvalidQuestion) as built:
        pipeline.request("How?", passages_k=-5)
    assert str(merged.value) == str(built.value)


async def test_good_fields_merge_over_a_prebuilt_request() -> None:
    pipeline, _ = _pipeline()
    request = pipeline.request(AnswerRequest(question="How?", mode="sot", passages_k=3), mode="normal", top_k=2)
    assert (request.question, request.mode, request.passages_k) == ("How?", "normal", 2)
    result = await pipeline.run(AnswerRequest(question="How do I sleep?"), mode="normal")
    assert result.mode == "normal" and result.answer
