"""The typed answer request: defaults resolved once from Settings, one validation, old names still read."""

from __future__ import annotations

import pytest

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.request import (
    AnswerRequest,
    InvalidQuestion,
    QuestionTooLong,
    ValidatedRequest,
    sampling_with,
    validate_request,
)
from sotrag.app.serving.service import Service
from tests.fakes import ScriptedEngine


class Counter:
    """Counts tokens as words, and how many texts it was asked about."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, text: str) -> int:
        self.texts.append(text)
        return len(text.split())


def test_resolve_fills_every_default_from_settings() -> None:
    settings = Settings(default_mode="normal", passages_k=7)
    resolved = AnswerRequest(question="q").resolve(settings)
    assert (resolved.mode, resolved.passages_k) == ("normal", 7)
    assert resolved.sampling is settings.sampling and resolved.sot is settings.sot
    asked = AnswerRequest(question="q", mode="sot", passages_k=0, sot=SoTConfig(max_points=4)).resolve(settings)
    assert (asked.mode, asked.passages_k, asked.sot.max_points) == ("sot", 0, 4)


def test_one_default_mode_is_auto() -> None:
    assert Settings().default_mode == "auto"
    assert AnswerRequest(question="q").resolve(Settings()).mode == "auto"


def test_passages_k_keeps_its_old_names(monkeypatch: pytest.MonkeyPatch) -> None:
    old_name = Settings.model_validate({"top_k": 3})  # as code written before the rename calls it
    assert old_name.passages_k == 3 and old_name.top_k == 3
    monkeypatch.setenv("TOP_K", "9")  # an unprefixed variable of someone else's is not ours
    assert Settings().passages_k == 5
    monkeypatch.setenv("SOTRAG_TOP_K", "8")
    assert Settings().passages_k == 8
    monkeypatch.setenv("SOTRAG_PASSAGES_K", "2")
    assert Settings().passages_k == 2


def test_request_is_frozen_and_strict() -> None:
    request = AnswerRequest(question="q")
    with pytest.raises(ValueError):
        request.question = "other"
    with pytest.raises(ValueError):
        AnswerRequest(question="q", top_k=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AnswerRequest(question="q", passages_k=-1)


async def test_validation_counts_the_question_and_each_turn_once() -> None:
    count = Counter()
    request = AnswerRequest(question="  how do I sleep?  ", history=(("a b", "c d e"),))
    validated = await validate_request(request, Settings(), count, max_model_len=100)
    assert isinstance(validated, ValidatedRequest)
    assert validated.request.question == "how do I sleep?" and validated.question_tokens == 4
    assert count.texts == ["how do I sleep?", "a b", "c d e"]


async def test_validation_refuses_empty_and_too_long() -> None:
    with pytest.raises(InvalidQuestion, match="empty"):
        await validate_request(AnswerRequest(question=" \u200b "), Settings(), Counter(), 100)
    with pytest.raises(QuestionTooLong, match="context of 40 tokens"):
        await validate_request(AnswerRequest(question="w " * 10), Settings(), Counter(), 40)
    long_history = AnswerRequest(question="short", history=(("w " * 10, "w " * 10),))
    with pytest.raises(QuestionTooLong, match="question and its history are 21 tokens"):
        await validate_request(long_history, Settings(), Counter(), 50)


def test_sampling_with_applies_a_clients_options_only() -> None:
    base = SamplingConfig(point_min_tokens=8, normal_min_tokens=8)
    assert sampling_with(base) is None
    s = sampling_with(base, max_tokens=4, temperature=0.5)
    assert s is not None
    assert (s.point_max_tokens, s.normal_max_tokens, s.point_min_tokens, s.temperature) == (4, 4, 4, 0.5)


class CountingEngine(ScriptedEngine):
    """Records every text it is asked to count."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[str] = []

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return super().count_tokens(text)


async def test_a_served_answer_tokenizes_its_question_for_validation_once() -> None:
    engine = CountingEngine()
    service = Service(Settings(), pipeline=SoTPipeline(engine))
    await service.start()
    try:
        question, turn = "How do I sleep better?", ("an earlier question", "its answer")
        run = await service.answer(AnswerRequest(question=question, mode="sot", history=(turn,)), surface="test")
        result = await run.run()
        assert result.mode == "sot"
        assert engine.counted.count(question) == 1
        assert engine.counted.count(turn[0]) == 1 and engine.counted.count(turn[1]) == 1
    finally:
        await service.stop()
