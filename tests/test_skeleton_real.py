"""The skeleton reader on real answers, and the corpus derivation behind them (no engine needed).

``tests/data/real_answers.jsonl`` holds every list-style answer that three real chat models wrote to the
Vicuna-80 questions, split by ``benchmarks/real_corpus.py`` (see ``REAL_ANSWERS_LICENSE.txt``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.real_corpus import derive, read
from tests.skeleton_stream import stream_skeleton

ROWS = read(Path(__file__).parent / "data" / "real_answers.jsonl")
IDS = [f"{r['source_model']}-{r['question_id']}" for r in ROWS]


def _distinct(titles: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for t in titles:
        key = " ".join(t.lower().split())
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _stream(text: str, seed: int) -> tuple[list[str], int | None]:
    return stream_skeleton(text, seed, max_points=100, max_chunk=16)


def test_the_fixture_covers_the_three_models_and_the_styles() -> None:
    assert {r["source_model"] for r in ROWS} == {"gpt35", "llama-13b", "vicuna-7b-20230322-fp16"}
    styles = {t for r in ROWS for t in r["style"]}
    assert {"blank_lines", "colon", "dash", "sentence", "keyword", "restart", "sub_bullets", "closing"} <= styles


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_reader_recovers_the_derived_skeleton_streamed(row: dict) -> None:
    titles = _distinct([p["title"] for p in row["points"]])
    for seed in range(3):
        points, _ = _stream(row["skeleton"], seed)
        assert points == titles


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_reader_keeps_the_whole_answer_list_whole(row: dict) -> None:
    """Read as if the model wrote its whole answer as the skeleton: every item is a point, and the early stop
    never comes before the last item."""
    points, ended = _stream(row["normal"], row["question_id"])
    titles = _distinct([p["title"] for p in row["points"]])
    if "sentence" in row["style"]:  # the reader keeps a one-line item whole; the derivation its first sentence
        assert len(points) >= len(titles)
        assert all(any(p.startswith(t) or t.startswith(p) for p in points) for t in titles)  # (long ones cut)
    else:
        assert points == titles
    if ended is not None:
        last = row["normal"].rfind(row["points"][-1]["title"])
        assert ended > row["normal"].find("\n", last) >= 0


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_fixture_is_what_the_derivation_gives(row: dict) -> None:
    d = derive(row["normal"])
    assert d is not None
    assert (d.skeleton, d.points, d.style, d.preamble, d.closing) == (
        row["skeleton"],
        row["points"],
        row["style"],
        row["preamble"],
        row["closing"],
    )


def test_derive_blank_lines_bold_colon_closing() -> None:
    text = (
        "Here are some tips:\n\n1. **Sleep**: Go to bed early.\n\n2. **Move**: Walk daily.\n   - even 10 minutes\n\n"
        "3. **Eat well**: Less sugar.\n\nRemember, small steps."
    )
    d = derive(text)
    assert d is not None
    assert d.skeleton == "1. **Sleep**\n\n2. **Move**\n\n3. **Eat well**"
    assert d.points == [
        {"title": "Sleep", "text": "Go to bed early."},
        {"title": "Move", "text": "Walk daily.\n   - even 10 minutes"},
        {"title": "Eat well", "text": "Less sugar."},
    ]
    assert d.preamble == "Here are some tips:" and d.closing == "Remember, small steps."
    assert {"blank_lines", "bold", "colon", "preamble", "closing", "sub_bullets"} <= set(d.style)


def test_derive_restart_sentences_and_non_lists() -> None:
    d = derive("Pros:\n1. Fast. Really fast.\n2. Cheap\n\nCons:\n1. Loud. Very.\n2. Big")
    assert d is not None and "restart" in d.style and "sentence" in d.style
    assert d.skeleton == "1. Fast.\n2. Cheap\n1. Loud.\n2. Big"
    assert [p["text"] for p in d.points] == ["Really fast.", "", "Very.", ""]
    assert derive("Just prose.\nNo list here.") is None
    assert derive("1. one\n2. two") is None  # fewer than 3 items
