"""Citation reader edges (audit 8): URLs, index expressions, a stray backtick, a text that ends inside a marker;
each read whole and delta by delta alike."""

from __future__ import annotations

import pytest

from sotrag.app.citations import CitationStream, read_citations

VALID = {1, 2, 3}


def _streamed(text: str, size: int) -> tuple[str, list[int], int]:
    stream = CitationStream(VALID)
    shown = "".join(stream.feed(text[i : i + size])[0] for i in range(0, len(text), size)) + stream.finish()[0]
    assert shown == stream.text
    return shown, stream.cited, stream.invalid


@pytest.mark.parametrize(
    ("text", "shown", "cited", "invalid"),
    [
        # a URL is a link, never a citation: nothing in it is cited or cut out
        ("see https://x.org/a[2]b now [1].", "see https://x.org/a[2]b now [1].", [1], 0),
        ("see https://x.org/a[9]b now", "see https://x.org/a[9]b now", [], 0),
        ("[link](https://x.org/[3]) and [9]", "[link](https://x.org/[3]) and", [], 1),
        # passages are numbered from 1: "[0]" is an index, not a marker
        ("use x[0] here", "use x[0] here", [], 0),
        # one stray backtick: its line reads on once the line ends without a closing one; the next lines too
        (
            "Press the ` key, then cite [9] and [1].\nNext [2] and [8].",
            "Press the ` key, then cite and [1].\nNext [2] and.",
            [1, 2],
            2,
        ),
        # a closed span is still code, a fenced block too
        ("Use `a[9]` and [1].", "Use `a[9]` and [1].", [1], 0),
        ("a ``x ` [9]`` b [2]", "a ``x ` [9]`` b [2]", [2], 0),
        ("```\ny = x[7]\n```\nthen [7] [3]", "```\ny = x[7]\n```\nthen [3]", [3], 1),
        # ending inside a marker: closed after its last whole number, or dropped
        ("Read a book [1", "Read a book [1]", [1], 0),
        ("Read a book [1, 2", "Read a book [1, 2]", [1, 2], 0),
        ("Read a book [9", "Read a book", [], 1),
        ("Read a book [Source", "Read a book", [], 0),
    ],
)
def test_edges(text: str, shown: str, cited: list[int], invalid: int) -> None:
    whole, _ = read_citations(text, VALID)
    assert whole == shown
    for size in (1, 2, 3, 7, len(text)):
        assert _streamed(text, size) == (shown, cited, invalid), size


def test_a_title_cites_for_its_point_first() -> None:
    stream = CitationStream(VALID)
    stream.cite_from("Use HTTPS [2] [9]")
    stream.feed(" text [1][2]")
    stream.finish()
    assert stream.cited == [2, 1] and stream.invalid == 0  # the title's [9] was counted where it was read
