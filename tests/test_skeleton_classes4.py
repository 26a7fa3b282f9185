"""List styles a fourth adversarial probe found misread (issue 22), one group per class, read whole and streamed.

As in ``test_skeleton_classes3.py``: each example stands for its class, every answer is read whole and fed in
random chunks (CR LF line ends too), the points are the listed titles, and the early stop never comes before
the last point's line is complete. Every group was misread by the reader before this round; the decisions where
a style is ambiguous (and the look-alikes that must stay what they were) are the tests after the list.
"""

from __future__ import annotations

import json
import warnings

import pytest

from sotrag.app.skeleton import SkeletonParser, parse_skeleton
from sotrag.app.skeleton_lines import parse_ordinal
from tests.skeleton_stream import check_read_whole_and_streamed
from tests.skeleton_stream import numbered_lines as _lines

T = ["Keep a consistent schedule", "Limit screens before bed", "Avoid caffeine after noon"]
ZH = ["保持规律作息", "睡前少看屏幕", "中午后不喝咖啡"]


def _ordinals(fmt: str, words: list[str], titles: list[str] = T, sep: str = "\n") -> str:
    """``titles`` as lines numbered by ``words`` (``{o}`` the word, ``{t}`` the title, ``{tl}`` it lower-cased)."""
    lines = [fmt.format(o=o, t=t, tl=t[0].lower() + t[1:]) for o, t in zip(words, titles, strict=True)]
    return sep.join(lines) + "\n"


ORD = ["First", "Second", "Third"]

ANSWERS = [
    # a skeleton written as JSON: an array, bare or fenced, one line or many; an object holding it; objects with
    # a title; an object numbered by its keys; a Python list; strings that carry their own numbering or bold
    pytest.param(json.dumps(T) + "\n", T, id="json-array-one-line"),
    pytest.param(json.dumps(T, indent=2) + "\n", T, id="json-array"),
    pytest.param(json.dumps(T, indent=2), T, id="json-array-no-final-newline"),
    pytest.param("```json\n" + json.dumps(T, indent=2) + "\n```\n", T, id="json-fenced"),
    pytest.param("```\n" + json.dumps(T, indent=2) + "\n```\n", T, id="json-plain-fence"),
    pytest.param(
        "Here is the skeleton:\n\n```json\n" + json.dumps(T, indent=2) + "\n```\n\nLet me know if you want more.\n",
        T,
        id="json-fenced-preamble-closing",
    ),
    pytest.param(
        "Sure, here is the outline as JSON:\n" + json.dumps(T, indent=2) + "\nLet me know!\n", T, id="json-preamble"
    ),
    pytest.param(json.dumps({"points": T}, indent=2) + "\n", T, id="json-object-holding-the-list"),
    pytest.param("```json\n" + json.dumps({"skeleton": T}) + "\n```\n", T, id="json-object-one-line-fenced"),
    pytest.param(
        json.dumps([{"point": i, "title": t} for i, t in enumerate(T, 1)], indent=2) + "\n", T, id="json-objects"
    ),
    pytest.param(
        json.dumps({"outline": [{"title": t, "subpoints": ["a", "b"]} for t in T]}, indent=4) + "\n",
        T,
        id="json-objects-with-sub-lists",
    ),
    pytest.param(json.dumps({str(i): t for i, t in enumerate(T, 1)}, indent=2) + "\n", T, id="json-numbered-keys"),
    pytest.param(repr(T) + "\n", T, id="python-list"),
    pytest.param(json.dumps([f"{i}. {t}" for i, t in enumerate(T, 1)], indent=2) + "\n", T, id="json-numbered"),
    pytest.param(json.dumps([f"**{t}**: why it helps" for t in T]) + "\n", T, id="json-bold-labels"),
    pytest.param('[\n  "Say \\"no\\" more often",\n  "Rest"\n]\n', ['Say "no" more often', "Rest"], id="json-escapes"),
    # setext headings ("Title" over "-----" or "====="): the headings are the points, as "## Title" ones are
    pytest.param(_lines("{t}\n--------------------\nSome text about it.", T, "\n\n"), T, id="setext-dash"),
    pytest.param(_lines("{t}\n====================\nSome text about it.", T, "\n\n"), T, id="setext-equals"),
    pytest.param(_lines("{t}\n---", T, "\n\n"), T, id="setext-short-underline"),
    pytest.param(
        "Sleep Better\n============\n\n" + _lines("{t}\n------------\nText.", T, "\n\n"), T, id="setext-under-a-title"
    ),
    pytest.param(_lines("{t}\n-----\n- a detail\n- another", T, "\n\n"), T, id="setext-over-bullets"),
    pytest.param("## Sleep tips\n\n" + _lines("{t}\n" + "-" * 20, T, "\n\n"), T, id="setext-under-an-atx-title"),
    # ordinal words as numbering: "First, t." "Firstly:" "**First:**" "**First**:" "### First -" "1st:"; the title
    # is the first sentence, with a capital; "Finally" or "Lastly" go on with the list
    pytest.param(_ordinals("{o}, {tl}.", ORD), T, id="ordinal-comma-sentences"),
    pytest.param(_ordinals("{o}, {tl}. It helps a lot.", ORD, sep="\n\n"), T, id="ordinal-paragraphs"),
    pytest.param(_ordinals("{o}: {t}", ["Firstly", "Secondly", "Thirdly"]), T, id="ordinal-ly-colon"),
    pytest.param(_ordinals("**{o}:** {t}", ORD), T, id="ordinal-bold-colon-inside"),
    pytest.param(_ordinals("**{o}**: {t}", ORD), T, id="ordinal-bold-colon-outside"),
    pytest.param(_ordinals("**{o}, {tl}.** More text.", ORD, sep="\n\n"), T, id="ordinal-bold-sentence"),
    pytest.param(_ordinals("### {o} - {t}\nText.", ORD, sep="\n\n"), T, id="ordinal-headings"),
    pytest.param(_ordinals("{o}: {t}", ["1st", "2nd", "3rd"]), T, id="ordinal-suffix"),
    pytest.param(
        _ordinals("{o}, {tl}.", ["First of all", "Second", "Third", "Finally"], [*T, "Exercise early"]),
        [*T, "Exercise early"],
        id="ordinal-first-of-all-finally",
    ),
    pytest.param(
        "Here are my tips:\n\n" + _ordinals("{o}, {tl}.", ORD, sep="\n\n") + "\nHope this helps.\nGood night!\n",
        T,
        id="ordinal-preamble-closing",
    ),
    pytest.param(
        _ordinals("**{o}:** {t}\n- a detail\n- another", ORD, sep="\n\n"), T, id="ordinal-labels-over-bullets"
    ),
    pytest.param(  # (bullets under the held "First" and "Second" lines: the early stop waits for "Third")
        "Sure! Here is the skeleton:\n\n"
        + _ordinals("{o}, {tl}.\n- a detail\n- another", ORD)
        + "\nHope this helps!\n",
        T,
        id="ordinal-sentences-over-bullets",
    ),
    pytest.param(
        "首先，保持规律作息。\n其次，睡前少看屏幕。\n再次，中午后不喝咖啡。\n最后，早点运动。\n",
        [*ZH, "早点运动"],
        id="ordinal-chinese",
    ),
    # a numbering written as a fraction ("1/5 T", as threads are numbered): its list starts at its third line
    pytest.param(_lines("{n}/3 {t}", T), T, id="fraction"),
    pytest.param(_lines("**{n}/5:** {t}", T), T, id="fraction-bold"),
    pytest.param(_lines("{n}/4 \U0001f9f5 {t}", T) + "4/4 Sleep well\n", [*T, "Sleep well"], id="fraction-thread"),
    # ordinal words in other languages (as keyword labels are read in them)
    pytest.param(_ordinals("{o}, {t}.", ["Erstens", "Zweitens", "Drittens"]), T, id="ordinal-de"),
    pytest.param(_ordinals("{o}, {t}.", ["En primer lugar", "En segundo lugar", "Tercero"]), T, id="ordinal-es"),
    pytest.param(_ordinals("{o} : {t}", ["Premièrement", "Deuxièmement", "Troisièmement"]), T, id="ordinal-fr"),
    pytest.param(_ordinals("**{o},** {t}", ["Primo", "Secondo", "Terzo"]), T, id="ordinal-it"),
    pytest.param(_ordinals("{o}, {t}.", ["Во-первых", "Во-вторых", "В-третьих"]), T, id="ordinal-ru"),
    pytest.param(_ordinals("{o}, {t}.", ["첫째", "둘째", "셋째"]), T, id="ordinal-ko"),
    pytest.param(
        "第一に、早く寝る。\n第二に、画面を見ない。\n第三に、運動する。\n",
        ["早く寝る", "画面を見ない", "運動する"],
        id="ordinal-ja",
    ),
    # a classic outline written without indentation: letters and numbers under Roman items are its sub-items
    pytest.param(
        "I. {}\nA. a hook\nB. a thesis\nII. {}\nA. a point\n1. a detail\n2. another detail\nIII. {}\n".format(*T),
        T,
        id="outline-unindented",
    ),
    # keyword labels: "No. 1:", "Number 1:", a capitalised word before the keyword ("Key Point 1:", "Pro Tip #2:"),
    # a count after the number ("Step 1/3:")
    pytest.param(_lines("No. {n}: {t}", T), T, id="kw-no"),
    pytest.param(_lines("Number {n}: {t}", T), T, id="kw-number"),
    pytest.param(_lines("Key Point {n}: {t}", T), T, id="kw-key-point"),
    pytest.param(_lines("**Pro Tip #{n}:** {t}", T), T, id="kw-pro-tip"),
    pytest.param(_lines("Step {n}/3: {t}", T), T, id="kw-step-of-count"),
    # lenticular brackets as numbering ("【1】T", "**【一】T**")
    pytest.param("".join(f"【{i}】{t}\n" for i, t in enumerate(T, 1)), T, id="lenticular"),
    pytest.param("".join(f"**【{n}】{t}**\n" for n, t in zip("一二三", ZH, strict=True)), ZH, id="lenticular-han-bold"),
    # LaTeX items ("\\item T", as a model asked for LaTeX writes a list)
    pytest.param("\\begin{enumerate}\n" + _lines("  \\item {t}", T) + "\\end{enumerate}\n", T, id="latex-items"),
    # more bullets: an em dash, the Japanese "・" (with or without a space), Cyrillic and Korean letters
    pytest.param(_lines("\u2014 {t}", T), T, id="em-dash-bullets"),
    pytest.param(_lines("\u30fb{t}", ZH), ZH, id="japanese-nakaguro"),
    pytest.param(_lines("\u30fb {t}", T), T, id="japanese-nakaguro-space"),
    pytest.param("".join(f"{c}) {t}\n" for c, t in zip("абв", T, strict=True)), T, id="cyrillic-letters"),
    pytest.param("".join(f"{c}. {t}\n" for c, t in zip("가나다", T, strict=True)), T, id="korean-letters"),
    # an emoji or symbol between the number and the title is decoration
    pytest.param(_lines("### {n}. \U0001f550 **{t}**\nGo to bed.", T, "\n\n"), T, id="emoji-after-number"),
    pytest.param(_lines("- \u2705 {t}", T), T, id="emoji-after-bullet"),
    # an ordinal with a noun after it ("First step: T")
    pytest.param(_ordinals("## {o} Step: {t}", ORD), T, id="ordinal-with-noun"),
    # items on one line separated by line break tags; a markdown hard break ("\\" at the end) after a title
    pytest.param("<br>".join(f"{i}. {t}" for i, t in enumerate(T, 1)) + "\n", T, id="br-between-items"),
    pytest.param("<br/>".join(f"- {t}" for t in T) + "\n", T, id="br-between-bullets"),
    pytest.param(_lines("{n}. {t}\\\nmore about it.", T), T, id="backslash-hard-break"),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "titles"), ANSWERS)
def test_list_style_classes_are_read_whole_and_streamed(text: str, titles: list[str], crlf: bool) -> None:
    check_read_whole_and_streamed(text, titles, crlf=crlf, seeds=6)


def test_a_json_list_gives_each_point_as_its_element_completes_and_ends_at_its_bracket() -> None:
    """Eager expansion starts a point once its element is complete; the closing bracket is the list's end (the
    early stop), and nothing after it is a point."""
    parser = SkeletonParser()
    assert parser.feed('[\n  "Keep a consistent schedule",\n') == [T[0]]
    assert parser.feed('  "Limit screens before bed"') == []  # (its line, and its element, are not complete)
    assert parser.feed("\n") == [] and not parser.list_ended
    assert parser.feed("]\n") == [T[1]] and parser.list_ended
    parser.feed("\nI hope this helps.\n")
    assert parser.finish() == T[:2] and parser.list_ended


def test_json_decisions() -> None:
    """Only a value that opens before any item, on a line that starts with it, is read as JSON; a value with no
    list of strings or titled objects gives no points; "[1] T" stays a numbered line."""
    assert parse_skeleton(json.dumps(T)) == T
    assert parse_skeleton('You can write a list as `["a", "b"]` in JSON.\n') == []
    assert parse_skeleton('```json\n{"name": "Ada", "age": 36}\n```\n') == []
    assert parse_skeleton("[\n  1,\n  2\n]\n") == []
    assert parse_skeleton("[1] Keep a consistent schedule\n[2] Limit screens\n") == [T[0], "Limit screens"]
    # after a markdown item, JSON is an example inside the answer: its elements are no points
    assert parse_skeleton("1. Use arrays\n" + json.dumps(["x", "y"]) + "\n2. Use objects\n") == [
        "Use arrays",
        "Use objects",
    ]


def test_setext_decisions() -> None:
    """Under a numbered list an underline stays a thematic break; one setext title over prose gives no points; a
    "---" after a blank line is a thematic break."""
    assert parse_skeleton("Plan it\n-------\nText.\n\nFocus\n-----\nText.\n") == ["Plan it", "Focus"]
    assert parse_skeleton("Sleep tips\n----------\n\n" + _lines("{n}. {t}", T)) == T
    assert parse_skeleton(_lines("{n}. {t}\nSome text.", T, "\n---\n")) == T
    assert parse_skeleton("Sleep Tips\n==========\n\nSleep is important. Go to bed early.\n") == []
    assert parse_skeleton("Sleep is important.\n\n---\n\nGo to bed early.\n") == []


def test_ordinals_wait_for_the_third() -> None:
    """ "First, ..." and "Secondly, ..." are as often the steps of a prose answer (a real answer that reasons
    "Firstly, ... Secondly, ..." and then computes): an ordinal list starts at its third item, which hands out the
    two before it too; "Finally" alone does not make the third ("First, ... Then, ... Finally, ..." is prose)."""
    parser = SkeletonParser()
    assert parser.feed("First, keep a consistent schedule.\nSecond, limit screens before bed.\n") == []
    assert parser.feed("Third, avoid caffeine after noon.\n") == T
    assert parse_skeleton("Sleep matters.\n\nFirstly, you need a schedule.\n\nSecondly, avoid screens.\n\nSo.\n") == []
    assert parse_skeleton("First, plan.\nThen, do it.\nFinally, rest.\n") == []
    assert parse_skeleton("First, let me explain.\n\n" + _lines("{n}. {t}", T)) == T  # a preamble: "1." goes on
    assert parse_skeleton(_lines("{n}. {t}", T) + "Second, this matters.\nThird, so does this.\n") == T
    # a held line is still a heading (a list of headings whose first starts with an ordinal or a fraction)
    headings = "## First Steps: Getting started\nText.\n\n## Going further\nText.\n\n## Tips\nText.\n"
    assert parse_skeleton(headings) == ["First Steps", "Going further", "Tips"]
    assert parse_skeleton("### 1/2 cup tips\nText.\n\n### Other tips\nText.\n") == ["1/2 cup tips", "Other tips"]


def test_fraction_decisions() -> None:
    """A fraction numbers a list only when three lines count up from 1 over the same denominator: a recipe's
    "1/3 cup" and "2/3 cup", "1/2" "2/3" "3/4", or "4/3 x pi" (a real answer's line) are text."""
    assert parse_skeleton("1/3 Plan it\n2/3 Focus\n3/3 Rest\n") == ["Plan it", "Focus", "Rest"]
    assert parse_skeleton("1/3 cup flour\n2/3 cup milk\n1 egg\n") == []
    assert parse_skeleton("1/2 cup flour\n2/3 cup sugar\n3/4 cup milk\n") == []
    assert parse_skeleton("4/3 x pi x r^3\n") == []


def test_ordinal_line_forms() -> None:
    """What one line says: the ordinal's number (0 for "Finally": the next) and the title's first sentence;
    a word without its separator is no ordinal."""
    assert parse_ordinal("First, keep a consistent schedule. It helps.") == (1, T[0], "")
    assert parse_ordinal("**Third:** Avoid caffeine") == (3, "Avoid caffeine", "")
    assert parse_ordinal("Lastly - rest") == (0, "Rest", "")
    assert parse_ordinal("其次，睡前少看屏幕。然后放松。") == (2, ZH[1], "")
    assert parse_ordinal("2/5 - Rest") == (2, "Rest", "/5")
    assert parse_ordinal("4/3 x pi") is None
    assert parse_ordinal("First things first, plan.") is None
    assert parse_ordinal("**Second**") is None


def test_letters_of_other_scripts_are_bullets_so_sub_items_under_numbers() -> None:
    """Korean and Cyrillic letters number a list as Latin ones do: its points where it is the list, sub-items
    under a numbered item."""
    assert parse_skeleton("가. {}\n나. {}\n".format(*T)) == T[:2]
    assert parse_skeleton("1. {}\n   가. a detail\n   나. another\n2. {}\n".format(*T)) == T[:2]
    assert parse_skeleton("1. {}\nа) a detail\nб) another\n2. {}\n".format(*T)) == T[:2]


def test_json_the_model_nests_too_deep_or_writes_as_code_is_no_list_and_no_crash() -> None:
    """Model text is anything: a JSON value nested deeper than the parsers recurse is no list (not an error that
    ends the answer), and an element the Python compiler would warn about (``1st``) reads without a warning in
    the server's log."""
    assert parse_skeleton("[" * 5000 + '"a"' + "]" * 5000, max_points=10) == []
    assert parse_skeleton("[\n" + "[" * 100000 + "\n", max_points=10) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_skeleton("[\n{'a': 1st},\n'Plan it',\n'Rest'\n]") == ["Plan it", "Rest"]


def test_json_an_objects_metadata_array_is_not_its_list() -> None:
    """An object's array under a metadata key (``tags``, ``sources``, ...) is no list, before or after the one that
    is; an array under any other key is (the first one), and each element's own arrays stay inside it."""
    guide = {"title": "Guide", "tags": ["sleep", "health"], "points": ["Plan it", "Focus", "Rest"]}
    assert parse_skeleton(json.dumps(guide, indent=2)) == ["Plan it", "Focus", "Rest"]
    check_read_whole_and_streamed(json.dumps(guide, indent=2) + "\n", ["Plan it", "Focus", "Rest"])
    assert parse_skeleton(json.dumps({"steps": ["Plan it", "Rest"], "sources": ["a", "b"]})) == ["Plan it", "Rest"]
    assert parse_skeleton(json.dumps({"tags": ["a", "b"]})) == []
    titled = [{"title": "Plan it", "tags": ["x"]}, {"title": "Rest", "tags": ["y"]}]
    assert parse_skeleton(json.dumps(titled, indent=2)) == ["Plan it", "Rest"]
