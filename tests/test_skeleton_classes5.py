"""List styles the fifth probe (``tests/skeleton_probe.py``) found misread (issue 22), one group per class.

As in ``test_skeleton_classes4.py``: each example stands for its class, every answer is read whole and fed in
random chunks (CR LF line ends too), the points are the listed titles, and the early stop never comes before
the last point's line is complete. Every group was misread by the reader before this round; the decisions where
a style is ambiguous (and the look-alikes that must stay what they were) are the tests after the list.
"""

from __future__ import annotations

import json

import pytest

from sotrag.app.skeleton import SkeletonParser, parse_skeleton
from tests.skeleton_stream import check_read_whole_and_streamed
from tests.skeleton_stream import numbered_lines as _lines

T = ["Keep a consistent schedule", "Limit screens before bed", "Avoid caffeine after noon"]

ANSWERS = [
    # more number marks: an arrow after the number, reStructuredText's auto-numbered "#.", the number sign "№",
    # Spanish and Portuguese ordinal indicators, a closing bracket alone, spaces inside parentheses
    pytest.param(_lines("{n} -> {t}", T), T, id="arrow"),
    pytest.param(_lines("{n} => {t}", T), T, id="fat-arrow"),
    pytest.param(_lines("{n} \u2192 {t}", T), T, id="unicode-arrow"),
    pytest.param("Skeleton\n========\n\n" + _lines("#. {t}", T), T, id="rst-auto-numbered"),
    pytest.param(_lines("#. **{t}**: why it helps", T), T, id="rst-auto-numbered-bold"),
    pytest.param(_lines("\u2116{n}. {t}", T), T, id="numero-sign"),
    pytest.param(_lines("\u2116 {n}: {t}", T), T, id="numero-sign-space"),
    pytest.param(_lines("{n}\u00ba {t}", T), T, id="ordinal-indicator"),
    pytest.param(_lines("{n}\u00aa. {t}", T), T, id="ordinal-indicator-feminine"),
    pytest.param(_lines("{n}] {t}", T), T, id="closing-bracket"),
    pytest.param(_lines("( {n} ) {t}", T), T, id="spaced-parentheses"),
    # a dash right after the number's dot ("1.- T", "1.-T", as Spanish answers write it), a dash after a bold number
    # ("**1**- T"), a circled number with a dot ("①. T"), an ordinal indicator or degree sign before ")" ("1°) T")
    pytest.param(_lines("{n}.- {t}", T), T, id="dot-dash"),
    pytest.param(_lines("{n}.-{t}", T), T, id="dot-dash-unspaced"),
    pytest.param(_lines("{n}.\u2013 **{t}**: why", T), T, id="dot-en-dash"),
    pytest.param(_lines("**{n}**- {t}", T), T, id="bold-number-dash"),
    pytest.param("".join(f"{c}. {t}\n" for c, t in zip("①②③", T, strict=True)), T, id="circled-dot"),
    pytest.param(_lines("{n}\u00b0) {t}", T), T, id="degree-paren"),
    pytest.param(_lines("{n}\u00aa) {t}", T), T, id="indicator-paren"),
    # more circled numbers (double circled "⓵", negative "⓫", parenthesized and circled ideographs "㈠" "㊀"), the
    # bullet operator "∙", a letter in parentheses numbering a bold label ("**(a)** T")
    pytest.param("".join(f"{c} {t}\n" for c, t in zip("\u24f5\u24f6\u24f7", T, strict=True)), T, id="double-circled"),
    pytest.param("".join(f"{c} {t}\n" for c, t in zip("\u3220\u3221\u3222", T, strict=True)), T, id="paren-ideograph"),
    pytest.param("".join(f"{c}{t}\n" for c, t in zip("\u3280\u3281\u3282", T, strict=True)), T, id="circled-ideograph"),
    pytest.param(_lines("\u2219 {t}", T), T, id="bullet-operator"),
    pytest.param("".join(f"**({c})** {t}\n" for c, t in zip("abc", T, strict=True)), T, id="bold-paren-letter"),
    # a keyword label with a spaced pipe after its number ("Step 1 | T"); an ordinal number with a noun ("1st Step: T")
    pytest.param(_lines("Step {n} | {t}", T), T, id="kw-pipe"),
    pytest.param(_lines("[Step {n}] {t}", T), T, id="kw-brackets"),
    pytest.param(_lines("**[Tip {n}]:** {t}", T), T, id="kw-brackets-bold-colon"),
    pytest.param("".join(f"{o} Step: {t}\n" for o, t in zip(["1st", "2nd", "3rd"], T, strict=True)), T, id="1st-step"),
    # keyword labels in German ("Nr. 1:"), Vietnamese, Indonesian and Japanese
    pytest.param(_lines("Nr. {n}: {t}", T), T, id="kw-nr"),
    pytest.param(_lines("B\u01b0\u1edbc {n}: {t}", T), T, id="kw-vietnamese"),
    pytest.param(_lines("**Langkah {n}:** {t}", T), T, id="kw-indonesian"),
    pytest.param(_lines("\u30b9\u30c6\u30c3\u30d7{n}\uff1a{t}", T), T, id="kw-japanese-step"),
    pytest.param(_lines("### \u30dd\u30a4\u30f3\u30c8{n}: {t}\nText.", T, "\n\n"), T, id="kw-japanese-point"),
    # a keyword label after a bullet or an emoji: its text is the title, not "Step 1"
    pytest.param(_lines("\U0001f539 **Step {n}:** {t}", T), T, id="emoji-bold-keyword"),
    pytest.param(_lines("\u2705 Tip {n}: {t}", T), T, id="emoji-keyword"),
    pytest.param(_lines("- **Day {n}:** {t}", T), T, id="bullet-bold-keyword"),
    pytest.param(
        "Here is the plan:\n\n" + _lines("* Step {n} - {t}\n  More on it.", T, "\n\n"), T, id="bullet-keyword"
    ),
    # a YAML list of maps with the title first: the title's value
    pytest.param(_lines("- title: {t}\n  detail: Why it helps.", T), T, id="yaml-maps"),
    pytest.param(
        "```yaml\npoints:\n" + _lines("  - title: {t}\n    description: Why.", T) + "```\n", T, id="yaml-maps-fenced"
    ),
    pytest.param(_lines("- name: '{t}'\n  summary: \"Why: it helps.\"", T), T, id="yaml-maps-quoted"),
    # "No. 1 T" with no separator: an ordinal list (from its third line: "No. 1 fan" alone is prose)
    pytest.param(_lines("No. {n} {t}", T), T, id="no-number"),
    pytest.param("Top habits:\n\n" + _lines("**No. {n}** {t}\nWhy it helps.", T, "\n\n"), T, id="no-number-bold"),
    # a YAML map whose title comes under a number key ("- id: 1" then "  title: T")
    pytest.param(_lines("- id: {n}\n  title: {t}\n  detail: Why it helps.", T), T, id="yaml-maps-id-first"),
    pytest.param("steps:\n" + _lines('  - step: {n}\n    name: "{t}"', T), T, id="yaml-maps-step-name"),
    # definition lists (markdown extra, pandoc): the terms are the points
    pytest.param(_lines("{t}\n: Why it helps.", T, "\n\n"), T, id="definition-list"),
    pytest.param(_lines("{t}\n\n:   Why it helps.", T, "\n\n"), T, id="definition-list-loose"),
    pytest.param(
        "Three habits:\n\n" + _lines("{t}\n:   Why it helps.\n:   And more.", T), T, id="definition-list-tight"
    ),
    # comments inside a JSON list (JSONC's "//" and "/* */", a Python list's "#"): no part of an element
    pytest.param(
        "[\n" + "".join(f'  "{t}", // point {i}\n' for i, t in enumerate(T, 1)) + "]\n", T, id="json-comments"
    ),
    pytest.param(
        "```jsonc\n[ // the skeleton\n  // first\n" + ",\n  // next\n".join(f'  "{t}"' for t in T) + "\n]\n```\n",
        T,
        id="json-comment-lines",
    ),
    pytest.param('[\n  /* 1 */ "' + '",\n  /* a\n  longer one */ "'.join(T) + '"\n]\n', T, id="json-block-comments"),
    pytest.param(
        "[\n" + "".join(f"    '{t}',  # point {i}\n" for i, t in enumerate(T, 1)) + "]\n", T, id="python-comments"
    ),
    pytest.param(
        '{\n  // the points\n  "points": [\n' + ",\n".join(f'    "{t}" /* why */' for t in T) + "\n  ]\n}\n",
        T,
        id="json-object-comments",
    ),
    # JSON Lines: one object a line, each an item (the first once a second follows)
    pytest.param("".join(json.dumps({"point": i, "title": t}) + "\n" for i, t in enumerate(T, 1)), T, id="jsonl"),
    pytest.param("```jsonl\n" + "".join(json.dumps({"title": t}) + "\n" for t in T) + "```\n", T, id="jsonl-fenced"),
    pytest.param("\n".join(json.dumps({"title": t}) + "\n" for t in T), T, id="jsonl-blank-lines"),
    pytest.param(
        "Here are the points as JSON Lines:\n\n"
        + "".join(json.dumps({"heading": t, "words": 4}) + "\n" for t in T)
        + "\nHope this helps.\n",
        T,
        id="jsonl-preamble-closing",
    ),
    # items written as XML elements, one a line (a wrapper element is no text)
    pytest.param("<points>\n" + _lines("  <point>{t}</point>", T) + "</points>\n", T, id="xml-points"),
    pytest.param(
        _lines('<step n="{n}">{t}: why it helps</step>', T) + "\nHope this helps.\nGood night!\n",
        T,
        id="xml-steps-closing",
    ),
    # "The first step is to ..." sentences: an ordinal list (from its third item, as "First, ..." lines)
    pytest.param(
        "The first step is to keep a consistent schedule. It anchors the body clock.\n\n"
        "The second step is to limit screens before bed.\n\nThe third step is to avoid caffeine after noon.\n\n"
        "The final step is to exercise early in the day.\n",
        [*T, "Exercise early in the day"],
        id="ordinal-sentences",
    ),
    pytest.param(
        "Here is how:\nThe first thing you should do is keep a consistent schedule.\n"
        "The second thing would be to limit screens before bed.\nThe third thing is to avoid caffeine after noon.\n"
        "\nI hope this helps.\nSleep well!\n",
        T,
        id="ordinal-sentences-thing",
    ),
    pytest.param(
        "The first step is to keep a consistent schedule.\nThe next step is to limit screens before bed.\n"
        "The next step is to avoid caffeine after noon.\n",
        T,
        id="ordinal-sentences-next",
    ),
    # keycaps and symbols in more places: a keyword's number ("Step 1️⃣:"), a table's row number cell, an emoji of
    # the Miscellaneous Technical block after the number ("1. ⏰ T")
    pytest.param(_lines("Step {n}\ufe0f\u20e3: {t}", T), T, id="keyword-keycap"),
    pytest.param("| | Point |\n|---|---|\n" + _lines("| {n}\ufe0f\u20e3 | {t} |", T), T, id="table-keycap-cells"),
    pytest.param(
        "| No. | Point |\n|---|---|\n" + "".join(f"| {c} | {t} |\n" for c, t in zip("①②③", T, strict=True)),
        T,
        id="table-circled",
    ),
    pytest.param(_lines("{n}. \u23f0 {t}", T), T, id="clock-emoji-after-number"),
    pytest.param(_lines("- \u231b **{t}**: why", T), T, id="hourglass-bullets"),
    # Unicode Roman numerals ("Ⅱ. T", as Chinese and Japanese answers write them) and Korean "1단계:" / "1번."
    pytest.param("".join(f"{r}. {t}\n" for r, t in zip("\u2160\u2161\u2162", T, strict=True)), T, id="unicode-roman"),
    pytest.param(
        "".join(f"{r}、{t}\n" for r, t in zip("\u2160\u2161\u2162", T, strict=True)), T, id="unicode-roman-comma"
    ),
    pytest.param(_lines("{n}\ub2e8\uacc4: {t}", T), T, id="korean-stage"),
    pytest.param(_lines("**{n}\ubc88.** {t}", T), T, id="korean-number"),
    # a last ordinal line that closes the answer ("Finally, I hope this helps.") is no point
    pytest.param(
        "First, keep a consistent schedule.\n\nSecond, limit screens before bed.\n\n"
        "Third, avoid caffeine after noon.\n\nFinally, I hope this helps you sleep better.\n",
        T,
        id="ordinal-finally-closing",
    ),
    pytest.param(
        "Firstly, keep a consistent schedule.\nSecondly, limit screens before bed.\nThirdly, avoid caffeine after"
        " noon.\nLastly, by following these tips you will sleep better.\n",
        T,
        id="ordinal-lastly-closing",
    ),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "titles"), ANSWERS)
def test_list_style_classes_are_read_whole_and_streamed(text: str, titles: list[str], crlf: bool) -> None:
    check_read_whole_and_streamed(text, titles, crlf=crlf, seeds=6)


def test_new_number_marks_stay_out_of_prose() -> None:
    """An arrow between numbers is no marker ("1 -> 2"), a degree sign is no ordinal indicator ("20° outside"), and
    a markdown bullet whose key is no title key keeps it ("- email: the address")."""
    assert parse_skeleton("1 -> 2 is a transition.\nIt is common.\n") == []
    assert parse_skeleton("20\u00b0 outside today.\nStay warm.\n") == []
    assert parse_skeleton("1-on-1 meetings help.\n2-3 hours is enough.\n") == []  # (a dash right after a digit)
    exit_1 = "1\ubc88 \ucd9c\uad6c\ub85c \ub098\uac00\uc138\uc694.\n"  # "take exit 1": 번 needs a mark after it
    assert parse_skeleton(exit_1) == []
    assert parse_skeleton("- email: the address\n- phone: the number\n") == ["email", "phone"]
    assert parse_skeleton("- **Step 1**\n- **Step 2**\n") == ["Step 1", "Step 2"]  # a label alone is the title
    # under a numbered item a bulleted keyword label stays its sub-item
    assert parse_skeleton("1. {}\n- **Step 1:** plan\n- **Step 2:** act\n2. {}\n".format(*T)) == T[:2]


def test_ordinal_sentences_and_closings_decisions() -> None:
    """ "The first time ..." is no ordinal sentence (no "is" after its noun), two of them are prose (the list
    starts at its third), and "Finally, ..." with a point's text stays the list's last point."""
    assert parse_skeleton("The first time I tried it, it failed.\nThe second time it worked.\n") == []
    assert parse_skeleton("The first step is to plan.\nThe second step is to act.\n") == []
    assert parse_skeleton("He was the No. 1 fan.\nNo. 1 fan here.\nNo. 2 fan there.\n") == []
    last = "First, plan it.\nSecond, act on it.\nThird, review it.\nFinally, reward yourself.\n"
    assert parse_skeleton(last) == ["Plan it", "Act on it", "Review it", "Reward yourself"]


def test_json_comment_and_lines_decisions() -> None:
    """Comment marks inside strings are text; one object alone is no list; after JSON Lines, the first line that is
    no titled object ends them (and the list: the early stop), a blank line does not."""
    urls = '[\n  "See http://example.com/a",\n  "Use # tags",\n  "Say // no"\n]\n'
    assert parse_skeleton(urls) == ["See http://example.com/a", "Use # tags", "Say // no"]
    assert parse_skeleton('{"answer": "Sleep more and avoid screens."}\n') == []
    assert parse_skeleton('{"title": "Sleep guide"}\n\n' + _lines("{n}. {t}", T)) == T
    parser = SkeletonParser()
    assert parser.feed(json.dumps({"title": T[0]}) + "\n") == []
    assert parser.feed(json.dumps({"title": T[1]}) + "\n") == T[:2] and not parser.list_ended
    assert parser.feed("\n") == [] and not parser.list_ended  # (a blank line between objects: they may go on)
    assert parser.feed(json.dumps({"title": T[2]}) + "\n") == T[2:]
    assert parser.feed("Hope this helps.\n") == [] and parser.list_ended


def test_definition_and_yaml_decisions() -> None:
    """A ": " line under text makes it a term only as a definition (a colon inside prose does not); a number key
    with no title under it gives no point; a definition list never sets the early stop, even after a closing (its
    terms are read as text between items first, which makes it a loose list: a known limit)."""
    assert parse_skeleton("Sleep is vital.\n\nIt has many roles: memory, mood.\n") == []
    assert parse_skeleton("Sleep is vital.\n\n\n: a definition two blank lines down is none\n") == []
    assert parse_skeleton("- id: 1\n- id: 2\n") == []
    assert parse_skeleton("<p>Sleep is vital.</p>\n<title>Sleep</title>\n") == []  # (not item elements)
    # (bold terms were read before: as bold labels, which they stay)
    check_read_whole_and_streamed(_lines("**{t}**\n~ Why it helps.", T, "\n\n"), T)
    parser = SkeletonParser()
    parser.feed(_lines("{t}\n: Why it helps.", T, "\n\n") + "\nI hope this helps.\nSleep well.\n")
    assert parser.finish() == T and not parser.list_ended
