"""The skeleton reader on lists written as markup, and the look-alikes that are no list (no engine needed).

Markdown tables, HTML lists and blockquoted lists are generated in their variants (with a preamble and a
closing, fed whole and in random chunks); the early stop may only come once the last item is complete.
Negative cases: "1/2 cup" is no "1/" marker, a references list ("[1] ...") adds no points, a table's header
row and a table under a list are no points, the items of a nested HTML list are sub-items.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sotrag.app.skeleton import SkeletonParser, parse_skeleton

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=9)
_odd = st.sampled_from(["1.5", "1/2", "24/7", "6:30", "(optional)", "don't", "self-care", "No. 1"])
# (a title is more than a row number: "No. 1" or "IV" alone would number a table row)
_title = (
    st.lists(st.one_of(_word, _word, _odd), min_size=1, max_size=6)
    .map(" ".join)
    .filter(lambda t: any(w.isalpha() and w != "No" and w.strip("IVX") for w in t.split()))
)
_titles = st.lists(_title, min_size=1, max_size=8, unique_by=lambda t: " ".join(t.lower().split()))
_cuts = st.lists(st.integers(0, 10_000), max_size=30)
_PREAMBLES = ["", "Sure! Here is the skeleton:\n\n", "Here is a plan:\n"]
_CLOSINGS = ["", "\n\nI hope this helps!", "\nRemember, consistency is key.\n", "\n<p>Good luck.</p>"]


def _read_streamed(text: str, cuts: list[int], last_item_end: int) -> list[str]:
    """The points of ``text`` fed in chunks cut at ``cuts``; asserts the early stop comes after the last item."""
    parser = SkeletonParser(max_points=20)
    points = sorted({c % (len(text) + 1) for c in cuts})
    fed = 0
    for a, b in zip([0, *points], [*points, len(text)], strict=True):
        parser.feed(text[a:b])
        fed = b
        if parser.list_ended:
            assert fed > last_item_end, (fed, text)
    return parser.finish()


# -- markdown tables ----------------------------------------------------------------------------------------

_NUMBER_CELLS = ["{n}", "**{n}**", "{n}.", "#{n}", "Step {n}"]
_SEPARATORS = ["|---|---|---|", "| --- | --- | --- |", "|:---|:---:|---:|", "|-|-|-|"]


@settings(max_examples=100, deadline=None)
@given(
    _titles,
    st.sampled_from([None, *_NUMBER_CELLS]),
    st.sampled_from(["{t}", "**{t}**", "{t}: short"]),
    st.sampled_from(_SEPARATORS),
    st.sampled_from(_PREAMBLES),
    st.sampled_from(_CLOSINGS),
    st.booleans(),
    _cuts,
)
def test_table_rows_are_the_points(
    titles: list[str], number: str | None, cell: str, sep: str, pre: str, close: str, crlf: bool, cuts: list[int]
) -> None:
    header = "| # | Step | Details |" if number else "| Step | Details | Notes |"
    rows = []
    for n, t in enumerate(titles, start=1):
        cells = [number.format(n=n)] if number else []
        cells += [cell.format(t=t), "Some details<br>more"] + ([] if number else ["x"])
        rows.append("| " + " | ".join(cells) + " |")
    text = pre + header + "\n" + sep + "\n" + "\n".join(rows)
    last_item_end = len(text)
    text += close
    if crlf:
        last_item_end += text[:last_item_end].count("\n")
        text = text.replace("\n", "\r\n")
    expected = [" ".join(t.split()) for t in titles]
    assert parse_skeleton(text, max_points=20) == expected
    assert _read_streamed(text, cuts, last_item_end) == expected


def test_a_table_header_and_a_table_under_a_list_are_no_points() -> None:
    assert parse_skeleton("| # | Keep a schedule |\n|---|---|\n") == []  # a header alone
    assert parse_skeleton("| 1 | Sleep |\n| 2 | Water |\n") == []  # no separator: no table, no points
    listed = "1. Sleep early\n2. Drink water\n\n| Tip | Cost |\n|---|---|\n| Walk | free |\n| Gym | paid |\n"
    assert parse_skeleton(listed) == ["Sleep early", "Drink water"]
    outer = "# | Tip | Why\n--|-----|----\n1 | Plan | less stress\n2 | Focus | faster\n"  # no outer pipes
    assert parse_skeleton(outer) == ["Plan", "Focus"]
    assert parse_skeleton("| Tip |\n|---|\n| Plan |\n| Focus |\n") == ["Plan", "Focus"]  # one column
    parser = SkeletonParser()
    parser.feed("| Step | Details |\n")
    assert parser.points == []
    assert parser.feed("|---|---|\n| Plan | first |\n| Do | then |\n") == ["Plan", "Do"]
    parser.feed("\nI hope this helps.\n")
    assert not parser.list_ended  # a closing: the end once the next line shows the table does not go on
    parser.feed("Now the full answer.\n")
    assert parser.list_ended


# -- HTML lists ---------------------------------------------------------------------------------------------

_LI = [
    "<li>{t}</li>",
    "<li><strong>{t}</strong>: {d}</li>",
    "<li><b>{t}</b> - {d}</li>",
    "<li><p><strong>{t}</strong></p><p>{d}</p></li>",
    "<li>{t}<ul><li>{d}</li><li>More.</li></ul></li>",
    "<li>{t}\n<ul>\n<li>{d}</li>\n</ul>\n</li>",
    '<li class="item">{t}</li>',
]


@settings(max_examples=100, deadline=None)
@given(
    _titles,
    st.sampled_from(_LI),
    st.sampled_from(["ol", "ul", "OL"]),
    st.sampled_from(["", "\n", "\n  "]),
    st.sampled_from(_PREAMBLES),
    st.sampled_from(_CLOSINGS),
    _cuts,
)
def test_html_list_items_are_the_points(
    titles: list[str], li: str, tag: str, sep: str, pre: str, close: str, cuts: list[int]
) -> None:
    items = [li.format(t=t, d="A sub point.") for t in titles]
    text = pre + f"<{tag}>" + sep + sep.join(items) + sep + f"</{tag}>"
    last_item_end = len(text)  # the list ends with its closing tag
    text += close
    expected = [" ".join(t.split()) for t in titles]
    assert parse_skeleton(text, max_points=20) == expected
    assert _read_streamed(text, cuts, last_item_end) == expected


def test_html_items_stream_one_by_one_on_one_line() -> None:
    parser = SkeletonParser()
    assert parser.feed("<ol><li>Sleep early</li><li>Drink wa") == ["Sleep early"]
    assert parser.feed("ter</l") == []
    assert parser.feed("i><li>Walk</li></ol>") == ["Drink water", "Walk"]
    assert parser.finish() == ["Sleep early", "Drink water", "Walk"]
    assert parse_skeleton("<ol><li>A point<ol><li>sub</li></ol></li><li>Another</li></ol>") == ["A point", "Another"]
    prose = "1. Use <ol> and <li> for order\n2. Use <ul> for the rest\n3. Close every <li> tag"
    assert parse_skeleton(prose) == ["Use <ol> and <li> for order", "Use <ul> for the rest", "Close every <li> tag"]
    about = "1. Ordered lists\n<ol> numbers its items.\n<li> marks one item.\n2. Unordered lists\n3. Nesting"
    assert parse_skeleton(about) == ["Ordered lists", "Unordered lists", "Nesting"]  # tags named in prose


# -- blockquotes, references, fractions ---------------------------------------------------------------------


def test_a_quoted_list_is_read_like_one_outside_a_quote() -> None:
    text = "> Skeleton:\n>\n> 1. Sleep early\n>    - by ten\n>\n> 2. Drink water\n> 3. Walk\n\nI hope this helps!"
    assert parse_skeleton(text) == ["Sleep early", "Drink water", "Walk"]
    assert parse_skeleton("> - Sleep early\n> - Drink water") == ["Sleep early", "Drink water"]


def test_a_references_list_adds_no_points() -> None:
    listed = "1. Sleep early\n2. Drink water\n3. Walk daily\n\n"
    expected = ["Sleep early", "Drink water", "Walk daily"]
    refs = ["[1] Smith, J. Sleep and health.\n[2] Doe, K. Water.\n", "[1] https://example.org/a\n[2] Doe et al.\n"]
    for tail in (*refs, "References:\n1. Smith, J. Sleep.\n2. Doe, K. Water.\n", "## Sources\n- Smith\n- Doe\n"):
        assert parse_skeleton(listed + tail) == expected, tail
        assert parse_skeleton(listed.replace("1. ", "- ").replace("2. ", "- ").replace("3. ", "- ") + tail) == expected
    bracketed = "[1] Sleep early\n[2] Drink water\n[3] Walk daily\n\n"
    assert parse_skeleton(bracketed + refs[1]) == expected
    assert parse_skeleton(bracketed + "**Sources:**\n[1] Smith, J. Sleep.\n[2] Doe, K. Water.") == expected
    assert parse_skeleton(listed + "1. https://example.org/a\n2. <https://example.org/b>") == expected
    parser = SkeletonParser()
    parser.feed(listed + "References:\n")
    assert parser.list_ended  # nothing after a references heading is a point


def test_fractions_are_no_slash_numbering() -> None:
    assert parse_skeleton("- 1/2 cup flour\n- 1/4 cup sugar\n- 2 eggs") == ["1/2 cup flour", "1/4 cup sugar", "2 eggs"]
    assert parse_skeleton("1/2 cup of oats is a start.\n\n1. Mix\n2. Bake") == ["Mix", "Bake"]
    assert parse_skeleton("1. Mix\n1/2 cup flour is enough.\n2. Bake 24/7") == ["Mix", "Bake 24/7"]
    assert parse_skeleton("1/ Mix\n2/ Bake\n\n1/2 cup is plenty.") == ["Mix", "Bake"]


# -- any text -----------------------------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        "1. ",
        "2) ",
        "[1] ",
        "1/ ",
        "- ",
        "* ",
        "> ",
        "| ",
        " | ",
        "|---|---|",
        "<ol>",
        "<li>",
        "</li>",
        "</ol>",
        "<ul>",
        "```",
        "**",
        "# ",
        "   ",
        "\n",
        "\n",
        "\r\n",
        "Title",
        "words here",
        ": ",
        ".",
        "References:",
        "a) ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=40).map("".join), _cuts)
def test_any_text_reads_the_same_whole_and_streamed(text: str, cuts: list[int]) -> None:
    """Whatever the text, chunking never changes the points (each line is read once it is complete)."""
    parser = SkeletonParser(max_points=20)
    points = sorted({c % (len(text) + 1) for c in cuts})
    for a, b in zip([0, *points], [*points, len(text)], strict=True):
        parser.feed(text[a:b])
    assert parser.finish() == parse_skeleton(text, max_points=20)
