"""Citation markers read from streamed text (no engine needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sotrag.app.citations import MARKER, CitationStream, read_citations

VALID = {1, 2, 3, 4}


def test_valid_markers_are_kept_in_canonical_form() -> None:
    cases = {
        "Paris is large [1].": "Paris is large [1].",
        "Both [1, 2] and [3-4].": "Both [1, 2] and [3, 4].",
        "Adjacent[1][2].": "Adjacent[1][2].",
        "Wide 【2】 and 【3†source】.": "Wide [2] and [3].",
        "Named [Source 2], [passages 1 and 3], [^4].": "Named [2], [1, 3], [4].",
    }
    for text, shown in cases.items():
        assert read_citations(text, VALID)[0] == shown, text


def test_invalid_numbers_are_removed_and_counted() -> None:
    stream = CitationStream(VALID)
    shown, markers = stream.feed("Paris [9]. Rome [1, 7] and [5-6] end.")
    rest, more = stream.finish()
    assert shown + rest == "Paris. Rome [1] and end."
    assert [m.invalid for m in markers + more] == [(9,), (7,), (5, 6)]
    assert stream.invalid == 4 and stream.cited == [1]


def test_not_markers() -> None:
    for text in ("In [2023] it rained.", "See [the docs](x).", "Use `a[9]` here.", "```\nx = y[7]\n```", "(1) a"):
        shown, markers = read_citations(text, VALID)
        assert shown == text and markers == [], text


def test_a_split_marker_is_held_until_it_closes() -> None:
    stream = CitationStream(VALID)
    assert stream.feed("It is [") == ("It is", [])
    assert stream.feed("9") == ("", [])
    shown, markers = stream.feed("] true [2")
    assert shown == " true" and markers[0].invalid == (9,)  # the space before a removed marker went with it
    shown, markers = stream.feed("]")
    assert shown == " [2]" and markers[0].cited == (2,)
    assert stream.finish() == ("", [])


def test_a_marker_left_open_at_the_end_is_never_shown_half_written() -> None:
    stream = CitationStream(VALID)
    assert stream.feed("cut at [1") == ("cut at", [])
    shown, markers = stream.finish()  # read as closed: a point cut by its token limit still cites passage 1
    assert (shown, [m.cited for m in markers]) == (" [1]", [(1,)]) and stream.cited == [1]
    # closed after its last whole number; dropped when that names no passage or there is no number
    for text, end in {"cut at [9": "cut at", "cut at [Source": "cut at", "cut at [1-": "cut at [1]"}.items():
        stream = CitationStream(VALID)
        assert stream.feed(text)[0] + stream.finish()[0] == end, text


# -- property: any chunking gives the whole text's result, nothing shown is taken back -----------------------

_numbers = st.integers(0, 12)
_marker = st.one_of(
    _numbers.map(lambda n: f"[{n}]"),
    st.tuples(_numbers, _numbers).map(lambda p: f"[{p[0]}, {p[1]}]"),
    st.tuples(_numbers, _numbers).map(lambda p: f"[{min(p)}-{max(p)}]"),
    _numbers.map(lambda n: f"【{n}】"),
    _numbers.map(lambda n: f"[Source {n}]"),
    _numbers.map(lambda n: f"[^{n}]"),
)
_plain = st.sampled_from(["word", " ", "  ", ".", ",", "\n", "[", "]", "[see]", "(1)", "`x[2]`", "2023", "【", "x"])
_text = st.lists(st.one_of(_plain, _plain, _marker), max_size=30).map("".join)


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(_text, st.lists(st.integers(0, 1000), max_size=20), st.sets(st.integers(0, 12)))
def test_chunked_equals_whole_and_shown_text_only_grows(text: str, cuts: list[int], valid: set[int]) -> None:
    whole, whole_markers = read_citations(text, valid)
    stream = CitationStream(valid)
    shown, markers = "", []
    for chunk in _chunks(text, cuts):
        piece, found = stream.feed(chunk)
        shown += piece
        markers += found
        assert whole.startswith(shown)  # never half a marker that is later rewritten or removed
    piece, found = stream.finish()
    assert (shown + piece, markers + found) == (whole, whole_markers)
    assert stream.invalid == sum(len(m.invalid) for m in whole_markers)
    # what is shown cites only valid passages; read again it is the same text, unless it ends like a marker left
    # open ("[1, [9]" shows "[1,"): read again, that is closed or dropped at the end
    again, again_markers = read_citations(whole, valid)
    assert all(not m.invalid for m in again_markers)
    assert again == whole or _ends_inside_a_marker(whole), (text, whole)


def _ends_inside_a_marker(text: str) -> bool:
    matches = (MARKER.match(text, j, partial=True) for j, ch in enumerate(text) if ch in "[【")
    return any(m is not None and m.partial for m in matches)
