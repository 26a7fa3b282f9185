"""The classes of list styles the skeleton reader missed before its sixth round (issue 22), one test a class: each
fails on the reader before the round, but for the guards of what must not change (a tag written out as text, an
unclosed backtick, a bold number in a sentence, a quoted line alone, the early stop after a closing). The probe
(``tests/skeleton_probe.py``) measures the same styles; the property tests over them are
``tests/test_reader6_styles.py``.
"""

from __future__ import annotations

import json

import pytest

from sotrag.app.skeleton import SkeletonParser, parse_skeleton
from sotrag.app.skeleton_lines import clean_title, parse_item
from tests.skeleton_stream import check_read_whole_and_streamed, numbered_lines, stream_skeleton

T = ["Keep a consistent schedule", "Limit screens before bed", "Avoid caffeine after noon"]
C = ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"]


def test_invisible_characters_are_dropped_but_an_emoji_sequence_keeps_its_joiner() -> None:
    """A soft hyphen, a joiner next to ASCII, direction embeddings: dropped. A zero-width joiner between two emoji
    (or two letters that shape) is part of the text, so an emoji inside a title stays whole."""
    assert parse_skeleton("\u202a1.\u200d Keep\u00ad it\u202c\n2. Go on\n") == ["Keep it", "Go on"]
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645"  # (a non-joiner between two letters is spelling)
    assert parse_skeleton(f"1. {persian}\n2. Go on\n") == [persian, "Go on"]
    for fmt in ("{n}.\u200d {t}", "\u200c{n}. {t}\u00ad", "\u2066{n}. {t}\u2069"):
        check_read_whole_and_streamed(numbered_lines(fmt, T), T)
    emoji = [t + " \U0001f468\u200d\U0001f4bb" for t in T]
    check_read_whole_and_streamed(numbered_lines("{n}. {t}", emoji), emoji)


def test_an_emoji_inside_a_title_stays() -> None:
    """Only symbols before the title are decoration ("1. ✅ T"); one inside it is part of it."""
    assert parse_item("1. Sleep \U0001f634 well") == ("num", "Sleep \U0001f634 well", "")
    coder = "\U0001f468\u200d\U0001f4bb"
    assert parse_item(f"1. Code {coder} daily") == ("num", f"Code {coder} daily", "")
    assert parse_item("1. \u2705 Sleep well") == ("num", "Sleep well", "")


@pytest.mark.parametrize(
    ("fmt", "titles"),
    [
        ("{n}.&nbsp;{t}", T),
        ("**{n}.**&nbsp;{t}", T),
        ("{n}.&#160;{t}", T),
        ("{n}. {t} &mdash; It helps.", T),
        ("{n}. &quot;{t}&quot;", T),
        ("{n}. {t} &amp; more", [t + " & more" for t in T]),
    ],
)
def test_html_character_references_read_as_their_characters(fmt: str, titles: list[str]) -> None:
    base = [t.removesuffix(" & more") for t in titles]
    check_read_whole_and_streamed(numbered_lines(fmt, base), titles)
    check_read_whole_and_streamed(numbered_lines(fmt, base), titles, crlf=True)


def test_a_tag_written_out_with_references_stays_text() -> None:
    """A tag shown as text ("&lt;ol&gt;") is text, never an HTML list."""
    assert parse_skeleton("1. Use &lt;ol&gt; here\n2. Go on\n") == ["Use &lt;ol&gt; here", "Go on"]
    assert parse_skeleton("Use &lt;ol&gt; for ordered lists.\n&lt;li&gt;A&lt;/li&gt;\nIt is HTML.\n") == []


def test_a_separator_inside_a_code_span_does_not_end_the_title() -> None:
    assert clean_title("Set `timeout: 30` in the config: why") == "Set `timeout: 30` in the config"
    assert clean_title("Run `make -- all` first - then test") == "Run `make -- all` first"
    assert clean_title("`git status`: see what changed") == "`git status`"
    titles = ["Set `timeout: 30` in the config", "Use `a - b` carefully", "Run `x \u2014 y`"]
    check_read_whole_and_streamed(numbered_lines("{n}. **{t}**: It matters.", titles), titles)


def test_an_unclosed_backtick_is_no_code_span() -> None:
    assert clean_title("Use ` quotes: carefully") == "Use ` quotes"


@pytest.mark.parametrize("fmt", ["***{n}. {t}***", "{n}. ***{t}***: It helps.", "### ***{n}. {t}***"])
def test_bold_italic_items(fmt: str) -> None:
    check_read_whole_and_streamed(numbered_lines(fmt, T), T)


@pytest.mark.parametrize("fmt", ["{n}. 【{t}】说明。", "{n}. 【{t}】：说明。", "{n}、〖{t}〗说明"])
def test_a_title_in_lenticular_brackets_is_the_title(fmt: str) -> None:
    check_read_whole_and_streamed(numbered_lines(fmt, C), C)


@pytest.mark.parametrize(
    "fmt",
    [
        "**Step {n}** {t}",
        "**[{n}]** {t}",
        "**{n}** {t}",
        "{n}.[{t}](https://example.com/)",
        '{n}."{t}"',
        "{n}.\u2705 {t}",
    ],
)
def test_bold_numbers_and_marks_without_a_space(fmt: str) -> None:
    check_read_whole_and_streamed(numbered_lines(fmt, T), T)


def test_a_bold_number_before_a_sentence_is_no_item() -> None:
    assert parse_skeleton("**1** in 3 adults sleeps too little.\n**2** hours of screens delay sleep.\n") == []


def test_a_bullet_right_before_its_text_and_an_emoji_column() -> None:
    check_read_whole_and_streamed("".join(f"\u2022{t}\n" for t in T), T)
    table = "| | Tip |\n|---|---|\n" + "".join(f"| \U0001f6cf\ufe0f | {t} |\n" for t in T)
    check_read_whole_and_streamed(table, T)


@pytest.mark.parametrize("fmt", ["<{n}> {t}", "\u00a7{n} {t}", "{n} | {t}", "{n}\t{t}", "{n}\t**{t}**", ". {t}"])
def test_numberings_of_the_earlier_known_limits(fmt: str) -> None:
    check_read_whole_and_streamed(numbered_lines(fmt, T), T)
    check_read_whole_and_streamed(numbered_lines(fmt, T), T, crlf=True)


def test_superscript_numbers_and_footnotes() -> None:
    """A list numbered "¹ ² ³" is read; footnotes written that way under a list numbered another way (or alone under
    prose) are no points, and so are superscript lines that cite ("¹ Walker, 2017.")."""
    check_read_whole_and_streamed("".join(f"{c} {t}\n" for c, t in zip("\u00b9\u00b2\u00b3", T, strict=True)), T)
    footnoted = numbered_lines("{n}. {t}", T) + "\n\u00b9 Walker, 2017.\n\u00b2 Chang, 2015.\n"
    check_read_whole_and_streamed(footnoted, T)
    assert parse_skeleton("Sleep matters.\u00b9\n\n\u00b9 Walker, 2017.\n") == []


def test_bare_numbers_are_a_list_from_the_third_line() -> None:
    """Lines "1 Plan it", capitalised, numbered 1 2 3 in order: a list, read from its third line (as ordinal words
    are); "2 eggs" or "1 in 3 adults" is prose."""
    check_read_whole_and_streamed(numbered_lines("{n} {t}", T), T)
    parser = SkeletonParser()
    assert parser.feed(f"1 {T[0]}\n2 {T[1]}\n") == []
    assert parser.feed(f"3 {T[2]}\n") == T
    assert parse_skeleton("1 cup flour\n2 eggs\n3 tbsp sugar\n") == []
    assert parse_skeleton("1 in 3 adults sleep badly.\n2 hours of screens delay sleep.\n3 cups is a lot.\n") == []
    assert parse_skeleton("1 Cup of tea.\n2 Eggs.\n") == []  # two lines: no list yet


def test_headings_numbered_with_no_mark_are_a_list_from_the_third() -> None:
    """Headings "## 1 Plan it" numbered 1 2 3: a list (as bare numbers are); one "## 5 Tips for sleep" heading over
    a list is its title, and two such headings stay headings."""
    check_read_whole_and_streamed("".join(f"## {n} {t}\n\nText.\n\n" for n, t in enumerate(T, 1)), T)
    assert parse_skeleton("## 5 Tips for Better Sleep\n\n1. A\n2. B\n") == ["A", "B"]
    assert parse_skeleton("## 1 Introduction\nText.\n## 2 Methods\nText.\n") == ["1 Introduction", "2 Methods"]


def test_a_rank_that_starts_a_sentence_is_prose() -> None:
    """A sentence after a rank ("#1 priority is rest.") is no point; "#1 plan it" or "#1 a - Text." are items."""
    assert parse_skeleton("#1 priority is rest.\nThat is all.\n") == []
    assert parse_skeleton("#1 plan it\n#2 do it\n") == ["plan it", "do it"]
    assert parse_skeleton("#1 Plan it. Then rest.\n#2 Do it.\n") == ["Plan it. Then rest", "Do it"]


@pytest.mark.parametrize("comma", ["", ","])
def test_json_lines_of_strings(comma: str) -> None:
    text = "".join(json.dumps(t) + comma + "\n" for t in T)
    check_read_whole_and_streamed(text, T)
    parser = SkeletonParser()
    assert parser.feed(json.dumps(T[0]) + comma + "\n") == []  # one quoted line alone is no list
    assert parser.feed(json.dumps(T[1]) + comma + "\n") == T[:2]


def test_one_quoted_line_is_prose_and_a_list_may_follow_it() -> None:
    assert parse_skeleton('"To be or not to be."\nThat is the question.\n') == []
    assert parse_skeleton('"Sleep better"\n\n' + numbered_lines("{n}. {t}", T)) == T
    assert parse_skeleton('""\n' + json.dumps(T) + "\n") == T


def test_a_quote_or_an_example_under_an_item_is_no_closing() -> None:
    """A tight list, a blank line, then a quote (outside a quoted list) or an example under the second item, and
    more items: streamed, the early stop never comes before the last one."""
    for between in ("> A quote about sleep.\n\nSo true.", "For example, stop at 9pm.\nThat works well."):
        text = f"1. {T[0]}\n2. {T[1]}\n\n{between}\n\n3. {T[2]}\n"
        check_read_whole_and_streamed(text, T)
        for seed in range(6):
            assert stream_skeleton(text, seed, max_points=10, max_chunk=3)[1] is None


def test_the_early_stop_still_comes_after_a_closing_and_more_prose() -> None:
    """What the quote rule does not change: a closing and a second line of prose after a tight list end it, and in
    a list written inside a quote, quoted prose after it does too."""
    for text in (
        numbered_lines("{n}. {t}", T) + "\nI hope this helps.\nGood luck!\n",
        numbered_lines("> {n}. {t}", T) + ">\n> I hope this helps.\n> Good luck!\n",
    ):
        points, ended = stream_skeleton(text, 0, max_points=10, max_chunk=5)
        assert points == T and ended is not None and ended > text.index(T[-1])


def test_a_sub_list_one_space_deeper_is_the_items() -> None:
    text = "".join(f"  {n}. {t}\n   1. a step\n   2. another step\n" for n, t in enumerate(T, 1))
    check_read_whole_and_streamed(text, T)
    drift = f"1. {T[0]}\n 2. {T[1]}\n 3. {T[2]}\n"  # the list's own numbering, indented one space: items
    check_read_whole_and_streamed(drift, T)
