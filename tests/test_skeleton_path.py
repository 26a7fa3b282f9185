"""The default skeleton path: unguided (plain decoding, bounded), ended by the parser, with a guided retry or
normal decoding when it yields too few points.

Two kinds of tests. A scripted engine (no model) plays back a chosen skeleton text, so the branch logic
(no regex on the first try, the early stop and its abort, the retry's reason) is checked exactly. The real
tiny vLLM engine then runs both fallback branches for real: its random weights write gibberish, which has
no numbered lines, so the unguided skeleton yields no points there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.real_corpus import read
from sotrag.app.config import Settings, SoTConfig
from sotrag.app.events import AnswerDone, AnswerResult, FallbackEvent, SkeletonDone, SkeletonRetry
from sotrag.app.ordered import OrderedText
from sotrag.app.pipeline import SoTPipeline
from tests.fakes import Pieces, ScriptedEngine, sampling

QUESTION = "What are good ways to sleep better at night?"


def scripted(skeletons: list[str | Pieces]) -> ScriptedEngine:
    """Plays back ``skeletons`` (one text per skeleton request, word by word) and a fixed point text."""
    return ScriptedEngine({"skeleton": skeletons, "skeleton-guided": skeletons[1:] or skeletons,
                           "point": " expanded point text.", "normal": "A plain answer."})


def settings(**sot: object) -> Settings:
    base = {"min_points": 2, "max_points": 3, "min_words": 2, "max_words": 4}
    return Settings(sot=SoTConfig(**{**base, **sot}))  # type: ignore[arg-type]


async def run(engine: object, s: Settings) -> tuple[list, AnswerResult]:
    events = [e async for e in SoTPipeline(engine, s).stream(QUESTION, mode="sot")]  # type: ignore[arg-type]
    assert isinstance(events[-1], AnswerDone)
    return events, events[-1].result


async def test_unguided_skeleton_is_plain_decoding_and_stops_at_max_points() -> None:
    engine = scripted(["1. Keep a schedule\n2. Dark cool room\n3. No late caffeine\n4. Never read this\n5. x"])
    events, result = await run(engine, settings())
    skeleton = engine.requests[0]
    assert skeleton.sampling.regex is None  # nothing for the engine core to mask
    assert skeleton.sampling.stop == ("\n4.",)
    assert skeleton.sampling.max_tokens == 3 * (2 * 4 + 4)  # bounded by points x words, under the 200 default
    assert result.mode == "sot" and result.skeleton_retry_reason is None and result.fallback_reason is None
    assert [p.title for p in result.points] == ["Keep a schedule", "Dark cool room", "No late caffeine"]
    assert result.stats.skeleton_mode == "unguided" and result.stats.skeleton_attempts == 1
    # the parser ended the skeleton once 3 lines were complete: the request was aborted, the rest never read
    assert skeleton.request_id in engine.aborted
    assert "Never read this" not in engine.streamed[skeleton.request_id]
    assert not any(isinstance(e, SkeletonRetry) for e in events)
    assert len(engine.requests) == 1 + 3


async def test_a_closing_sentence_after_min_points_ends_the_skeleton() -> None:
    """A closing, then a line that shows the list does not go on: the request is aborted there."""
    engine = scripted(["1. Keep a schedule\n2. Dark cool room\n\nThat is the plan.\nNow the answer.\n3. late"])
    _, result = await run(engine, settings())
    assert [p.title for p in result.points] == ["Keep a schedule", "Dark cool room"]
    assert engine.requests[0].request_id in engine.aborted
    assert "late" not in engine.streamed[engine.requests[0].request_id]


async def test_a_sentence_between_two_items_does_not_end_the_skeleton() -> None:
    engine = scripted(["1. Keep a schedule\n2. Dark cool room\n\nThis one matters most.\n\n3. No late caffeine\n"])
    _, result = await run(engine, settings(max_points=5))
    assert [p.title for p in result.points] == ["Keep a schedule", "Dark cool room", "No late caffeine"]
    assert engine.requests[0].request_id not in engine.aborted


async def test_blank_lines_between_points_do_not_end_the_skeleton() -> None:
    skeleton = "Sure! Here is the skeleton:\n\n1. **Keep a schedule**: same hours\n\n2. Dark cool room\n\n3. No tea"
    engine = scripted([skeleton])
    _, result = await run(engine, settings(max_points=5))
    assert [p.title for p in result.points] == ["Keep a schedule", "Dark cool room", "No tea"]


REAL = read(Path(__file__).parent / "data" / "real_answers.jsonl")


@pytest.mark.parametrize("eager", [False, True], ids=["after", "eager"])
@pytest.mark.parametrize("row", REAL, ids=[f"{r['source_model']}-{r['question_id']}" for r in REAL])
async def test_real_skeletons_are_kept_whole_and_stop_after_a_closing(row: dict, eager: bool) -> None:
    """Each real model's skeleton (tests/data/real_answers.jsonl), in its own line style, with its preamble and
    closing and then chatter: every point up to max_points arrives, and the request stops no earlier."""
    text = "\n\n".join(x for x in (row["preamble"], row["skeleton"], row["closing"]) if x)
    whole = text + "\nNow the full answer.\n1. Not a point"
    engine = scripted([Pieces(tuple(whole[i : i + 3] for i in range(0, len(whole), 3)))])  # 3 characters a delta
    # every 3 characters are one token here: room for the longest skeleton (the bound is points x words)
    s = settings(min_points=3, max_points=20, max_words=40, eager=eager)
    s = s.model_copy(update={"sampling": sampling(skeleton_max_tokens=2000)})
    _, result = await run(engine, s)
    distinct = list(dict.fromkeys(p["title"] for p in row["points"]))  # (no two differ only in case here)
    assert [p.title for p in result.points] == distinct[:20]
    streamed = engine.streamed[engine.requests[0].request_id]
    if len(distinct) < 20:
        assert row["skeleton"] in streamed  # the early stop came after the list, never inside it


async def test_too_few_unguided_points_retry_guided_with_the_reason() -> None:
    engine = scripted(["Sure! Sleep is important.", "1. Keep a schedule\n2. Dark cool room\n"])
    events, result = await run(engine, settings())
    first, retry = engine.requests[0], engine.requests[1]
    assert first.sampling.regex is None
    assert retry.sampling.regex is not None and retry.sampling.regex.startswith(r"1\. [^\n]{1,80}\n")
    assert retry.sampling.stop == ()
    kinds = [type(e) for e in events]
    assert kinds.index(SkeletonRetry) < kinds.index(SkeletonDone)
    reason = next(e.reason for e in events if isinstance(e, SkeletonRetry))
    assert reason == "the unguided skeleton had 0 usable point(s), fewer than 2: asked again, guided"
    assert result.skeleton_retry_reason == reason and result.fallback_reason is None
    assert result.mode == "sot" and len(result.points) == 2
    assert result.stats.skeleton_mode == "guided retry" and result.stats.skeleton_attempts == 2
    assert result.skeleton.startswith("1. Keep")  # the discarded text is not the answer's skeleton
    # readers in order (OpenAI API, LangChain) drop the discarded skeleton's state
    ordered = OrderedText()
    text = "".join(ordered.feed(e) for e in events)
    assert text.startswith("1. Keep a schedule")


async def test_fallback_normal_skips_the_retry() -> None:
    engine = scripted(["no list here"])
    events, result = await run(engine, settings(skeleton_fallback="normal"))
    assert result.mode == "normal" and result.skeleton_retry_reason is None
    assert result.fallback_reason == "the unguided skeleton had 0 usable point(s), fewer than 2: normal decoding"
    assert any(isinstance(e, FallbackEvent) for e in events)
    assert len(engine.requests) == 2 and engine.requests[1].request_id.endswith("-normal")


async def test_guided_from_the_start_keeps_the_word_regex_as_an_option() -> None:
    engine = scripted(["1. Keep a schedule\n2. Dark cool room\n"])
    _, result = await run(engine, settings(guided_skeleton=True, guided_regex="word"))
    regex = engine.requests[0].sampling.regex
    assert regex is not None and "{1,24}" in regex  # the word-bounded shape
    assert result.stats.skeleton_mode == "guided" and result.mode == "sot"


# -- the real tiny engine ----------------------------------------------------------------------------------

SAMPLING = sampling(point_max_tokens=8, normal_max_tokens=16, skeleton_max_tokens=200)


@pytest.mark.engine
async def test_tiny_model_gibberish_gets_a_guided_retry(engine: object) -> None:
    _, result = await run(engine, Settings(sampling=SAMPLING, sot=SoTConfig(min_points=2, max_points=3)))
    assert result.stats.skeleton_mode == "guided retry" and result.stats.skeleton_attempts == 2
    assert result.skeleton_retry_reason is not None and "unguided skeleton had" in result.skeleton_retry_reason
    assert result.mode == "sot" and len(result.points) >= 2
    assert result.stats.tokens > result.stats.skeleton_tokens + sum(p.tokens for p in result.points)  # + discarded
    assert engine.num_unfinished_requests() == 0  # type: ignore[attr-defined]


@pytest.mark.engine
async def test_tiny_model_gibberish_falls_back_to_normal_when_asked(engine: object) -> None:
    sot = SoTConfig(min_points=2, max_points=3, skeleton_fallback="normal")
    _, result = await run(engine, Settings(sampling=SAMPLING, sot=sot))
    assert result.mode == "normal" and result.answer
    assert result.fallback_reason is not None and result.fallback_reason.startswith("the unguided skeleton had")
    assert result.stats.skeleton_attempts == 1
