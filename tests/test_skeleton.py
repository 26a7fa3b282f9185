"""The skeleton regex and the point parser (no engine needed)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from sotrag.app.skeleton import MAX_TITLE_CHARS, SkeletonParser, parse_skeleton, skeleton_regex

words = st.text(alphabet=st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=10)
titles = st.lists(words, min_size=1, max_size=6).map(" ".join)


def test_numbered_styles_and_noise() -> None:
    text = (
        "Here is the skeleton:\n1. Keep a schedule\n2) Avoid caffeine late\n**3.** **Dark, cool room**:\n\nThat's all."
    )
    assert parse_skeleton(text) == ["Keep a schedule", "Avoid caffeine late", "Dark, cool room"]


def test_bullets_only_when_no_numbers() -> None:
    assert parse_skeleton("- first idea\n* second idea\n• third") == ["first idea", "second idea", "third"]
    assert parse_skeleton("1. numbered\n- bullet") == ["numbered"]


def test_duplicates_empty_and_max_points() -> None:
    text = "1. Same point\n2.   same   POINT\n3.\n4. Other\n5. Third\n6. Fourth"
    assert parse_skeleton(text, max_points=3) == ["Same point", "Other", "Third"]


def test_citation_markers_stay_in_titles_for_the_pipeline_to_check() -> None:
    """A model told to cite may cite in its skeleton: the reader keeps the markers (the pipeline removes those
    that name no passage, test_citations_pipeline); a bold title keeps its marker, "[1] T" is a numbering."""
    text = "1. Path parameters [2]\n2. **Caching** [1, 3]: how\n3. Limits [2-4].\n"
    assert parse_skeleton(text) == ["Path parameters [2]", "Caching [1, 3]", "Limits [2-4]"]
    assert parse_skeleton("[1] First thing\n[2] Second thing [1]") == ["First thing", "Second thing [1]"]


def test_overlong_title_is_cut_at_a_word() -> None:
    long = " ".join(["word"] * 100)
    (title,) = parse_skeleton(f"1. {long}")
    assert len(title) <= MAX_TITLE_CHARS and title.endswith("word")


def test_incremental_feed_reports_points_when_lines_complete() -> None:
    parser = SkeletonParser()
    assert parser.feed("1. Fir") == []
    assert parser.feed("st point\n2. Sec") == ["First point"]
    assert parser.feed("ond") == []
    assert parser.finish() == ["First point", "Second"]


def test_truncated_last_line_is_dropped() -> None:
    parser = SkeletonParser()
    parser.feed("1. Complete point\n2. Half a po")
    assert parser.finish(truncated=True) == ["Complete point"]


@given(st.lists(titles, min_size=1, max_size=12), st.sampled_from([". ", ") "]), st.integers(1, 12))
def test_parser_recovers_generated_lists(items: list[str], sep: str, max_points: int) -> None:
    text = "\n".join(f"{i}{sep}{t}" for i, t in enumerate(items, start=1))
    expected: list[str] = []
    seen: set[str] = set()
    for t in items:
        key = " ".join(t.lower().split())
        if key not in seen and len(expected) < max_points:
            seen.add(key)
            expected.append(t)
    assert parse_skeleton(text, max_points=max_points) == expected


@given(st.integers(1, 6), st.integers(0, 4), st.data())
def test_regex_accepts_exactly_ordered_lists_in_bounds(min_points: int, extra: int, data: st.DataObject) -> None:
    max_points = min_points + extra
    rx = re.compile(skeleton_regex(min_points, max_points, 3, 8))
    n = data.draw(st.integers(1, max_points + 2))
    lines = "".join(f"{i}. {' '.join(['w'] * data.draw(st.integers(3, 8)))}\n" for i in range(1, n + 1))
    assert bool(rx.fullmatch(lines)) == (min_points <= n <= max_points)


def test_regex_rejects_bad_word_counts_and_numbering() -> None:
    rx = re.compile(skeleton_regex(2, 3, 3, 8))
    assert rx.fullmatch("1. a b c\n2. d e f\n")
    assert not rx.fullmatch("1. a b\n2. d e f\n")  # too few words
    assert not rx.fullmatch("1. a b c\n3. d e f\n")  # skipped a number
    assert not rx.fullmatch("1. " + " ".join("x" * 9) + "\n2. d e f\n")  # too many words
