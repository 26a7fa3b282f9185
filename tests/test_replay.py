"""The whole SoT path on real text: the tiny model on the real vLLM CPU engine, made to write recorded real
answers by the replay logits processor (``sotrag.app.engines.replay``), through the unchanged pipeline.

What runs for real here and nowhere else in the tests: the unguided skeleton as a real model writes it (blank
lines between items, bold titles, ``Title: description``, a preamble and a closing remark, sub-bullets), the
skeleton reader on it, the early stop, the point requests continuing it, their stop strings, the fallback to
normal decoding, eager expansion, and the normal answer. Expected titles and texts come from the recorded
answers, never from the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.replay import UNMATCHED_TEXT, continuations, identify, load_scripts
from sotrag.app.events import AnswerDone, AnswerResult, PointStarted, SkeletonDone
from sotrag.app.pipeline import SoTPipeline
from sotrag.prompts import build as prompts
from tests.replay_support import pick_rows

MAX_POINTS = 10
# The tiny model's tokenizer writes about 4 tokens a word: room for real skeletons, points and answers.
SAMPLING = SamplingConfig(temperature=0.0, skeleton_max_tokens=1000, point_max_tokens=600, normal_max_tokens=1500)
SOT = SoTConfig(max_points=MAX_POINTS, max_words=50, skeleton_fallback="normal")
SOT_CASES = [name for name in pick_rows() if name not in ("too few points", "citations")]  # citations: their own test


def expected_points(row: dict) -> list[tuple[str, str]]:
    """(title, text) of each point the pipeline must produce: the recorded titles (a repeated one once, as the
    reader keeps it), and the recorded text after the title cut at the first blank line or numbered line after
    its first text (nothing ends a point before it has text)."""
    stops = ["\n\n", *(f"\n{j}." for j in range(1, MAX_POINTS + 2))]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for p, text in zip(row["points"], continuations(row), strict=True):
        key = " ".join(p["title"].casefold().split())
        if key in seen:
            continue
        seen.add(key)
        start = len(text) - len(text.lstrip())
        cut = min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=len(text))
        out.append((p["title"], text[:cut]))
    return out[:MAX_POINTS]


def title(text: str) -> str:
    """A title as compared: without the punctuation a cut can leave at its end ("..., as" -> "..., as")."""
    return text.rstrip(",;.")


async def answer(engine: object, question: str, **kw: object) -> tuple[list, AnswerResult]:
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=SoTConfig(**{**SOT.model_dump(), **kw})))  # type: ignore[arg-type]
    events = [e async for e in pipeline.stream(question, mode="sot")]
    assert isinstance(events[-1], AnswerDone)
    return events, events[-1].result


@pytest.mark.engine
@pytest.mark.parametrize("case", SOT_CASES)
async def test_replayed_answer_keeps_every_point(replay_engine: object, replay_rows: tuple, case: str) -> None:
    row = replay_rows[1][case]
    _, result = await answer(replay_engine, row["question"])

    assert result.mode == "sot", result.fallback_reason
    assert result.skeleton_retry_reason is None and result.stats.skeleton_mode == "unguided"
    assert row["skeleton"].startswith(result.skeleton)  # the replay wrote the recorded skeleton (maybe cut early)
    want = expected_points(row)
    assert [title(p.title) for p in result.points] == [title(t) for t, _ in want]
    assert [p.text for p in result.points] == [x for _, x in want]
    assert all(p.finish_reason in ("stop", None) for p in result.points)
    if len(row["points"]) > MAX_POINTS:  # the early stop: the skeleton ends once MAX_POINTS lines are complete
        assert len(result.skeleton) < len(row["skeleton"])


@pytest.mark.engine
async def test_replayed_eager_expansion_gives_the_same_answer(replay_engine: object, replay_rows: tuple) -> None:
    rows = replay_rows[1]
    row = rows.get("style:blank_lines") or rows[SOT_CASES[0]]
    events, result = await answer(replay_engine, row["question"], eager=True)

    assert result.mode == "sot"
    assert [(title(p.title), p.text) for p in result.points] == [(title(t), x) for t, x in expected_points(row)]
    kinds = [type(e) for e in events]
    assert kinds.index(PointStarted) < kinds.index(SkeletonDone)  # point 1 started while the skeleton streamed


@pytest.mark.engine
async def test_too_few_points_fall_back_to_the_recorded_normal_answer(
    replay_engine: object, replay_rows: tuple
) -> None:
    row = replay_rows[1]["too few points"]
    _, result = await answer(replay_engine, row["question"])

    assert result.mode == "normal" and result.fallback_reason is not None
    assert result.answer == row["normal"].strip()


@pytest.mark.engine
async def test_a_prompt_without_a_script_gets_the_replay_error_text(replay_engine: object) -> None:
    pipeline = SoTPipeline(replay_engine, Settings(sampling=SAMPLING, sot=SOT))  # type: ignore[arg-type]
    result = await pipeline.run("A question nobody recorded an answer to?", mode="normal")
    assert result.answer == UNMATCHED_TEXT


# -- without an engine: the script and the prompt matching ---------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from tests.tiny_model import build_tokenizer

    return build_tokenizer()


def _script(tmp_path: Path, **row: object) -> Path:
    import json

    base = {"question": "Why?", "skeleton": "1. A\n2. B", "points": [{"title": "A", "text": "A: a."}], "normal": "n"}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({**base, **row}) + "\n")
    return path


def test_a_script_the_tokenizer_cannot_write_is_refused_at_load(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(ValueError, match="special token"):
        load_scripts(_script(tmp_path, normal="ends here<|im_end|>"), tokenizer)


def test_a_bad_script_is_refused_before_the_engine_starts(tmp_path: Path, tiny_model_dir: Path) -> None:
    """With the model named, the caller gets the script's own error, not vLLM's "engine core initialization
    failed" with the reason only in the engine's log."""
    from sotrag.app.engines.replay import replay_engine_extra

    with pytest.raises(ValueError, match=r"s\.jsonl:1 .*special token"):
        replay_engine_extra(_script(tmp_path, normal="ends here<|im_end|>"), model=tiny_model_dir)
    assert replay_engine_extra(_script(tmp_path), model=tiny_model_dir)["additional_config"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        ('{"question": "Why?", "skeleton": "1. A"}', "missing points, normal"),
        ('{"question": "Why?", "skeleton": "1. A", "points": [{"title": "A"}], "normal": "n"}', "points must be"),
        ('{"question": 3, "skeleton": "1. A", "points": [], "normal": "n"}', "question, skeleton and normal must"),
    ],
)
def test_a_malformed_script_line_is_named(tmp_path: Path, tokenizer, line: str, says: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=f"bad\\.jsonl:1: {says}"):
        load_scripts(path, tokenizer)


def test_every_real_answer_encodes_exactly_with_the_tiny_tokenizer(tokenizer) -> None:
    from tests.replay_support import REAL_ANSWERS

    scripts = load_scripts(REAL_ANSWERS, tokenizer)  # raises on the first text that does not round-trip
    assert len(scripts) >= 20


def test_requests_are_matched_by_what_their_prompt_asks(tmp_path: Path, tokenizer) -> None:
    scripts = load_scripts(_script(tmp_path, question="Why is the sky blue?"), tokenizer)
    s = scripts["Why is the sky blue?"][0]

    def render(messages: list, cont: bool = False) -> str:
        return tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=not cont,
            continue_final_message=cont,
        )

    skel = prompts.skeleton_messages("Why is the sky blue?")
    assert identify(render(skel), "", scripts)[0] == s.skeleton
    point = prompts.point_messages(skel, "1. A\n2. B", 1, "A")
    assert identify(render(point, cont=True), "", scripts)[0] == s.points[0]
    assert identify(render(prompts.normal_messages("Why is the sky blue?")), "", scripts)[0] == s.normal
    missing = prompts.point_messages(skel, "1. A\n2. B", 2, "B")  # the script has one point
    assert identify(render(missing, cont=True), "", scripts)[0] is None
    assert identify(render(prompts.normal_messages("Why not?")), "", scripts)[0] is None


def test_one_question_with_several_scripts_needs_the_source_tag(tmp_path: Path, tokenizer) -> None:
    import json

    rows: list[dict[str, Any]] = [
        {"question": "Why?", "source_model": m, "skeleton": f"1. {m}\n2. x", "points": [], "normal": m}
        for m in ("a", "b")
    ]
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scripts = load_scripts(path, tokenizer)
    text = "user\nWhy?"
    assert identify(text, "", scripts)[0] is None
    assert identify(text, "passage replay:b", scripts)[0] == tuple(tokenizer.encode("b", add_special_tokens=False))
