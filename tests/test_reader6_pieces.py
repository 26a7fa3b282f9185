"""The skeleton reader's line cutter (``Pieces``): fed in any chunks, it cuts the text where cutting the whole text
at once does (lines, and pieces before an HTML list tag after a tag), and it searches each character once, so a
long line streamed in small deltas costs its length (main's reader searched the whole line again at every delta).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sotrag.app.skeleton import SkeletonParser
from sotrag.app.skeleton_blocks import LINE_END, Pieces
from sotrag.app.skeleton_lines import HTML_BREAK, HTML_BREAK_AFTER_TAG

_TOKENS = [
    "a",
    " ",
    "  ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "<",
    ">",
    "<li>",
    "</li>",
    "<ol>",
    "</ol>",
    "<ul>",
    "<li class='x'>",
    "<b>",
    "</b>",
    "<p>",
    "1. ",
    "x<li>",
    "> <li>",
    "<ol >",
]


def _cut_whole(text: str) -> tuple[list[str], str]:
    """The pieces of ``text`` cut as one string (the rule ``Pieces`` keeps), and the rest."""
    pieces: list[str] = []
    while True:
        newline = LINE_END.search(text)
        end, skip = (newline.start(), 1) if newline else (-1, 1)
        if "<" in text:
            after_tag = not text.lstrip().startswith("<")
            html = (HTML_BREAK_AFTER_TAG if after_tag else HTML_BREAK).search(text, 1, end if end >= 0 else len(text))
            if html is not None:
                end, skip = html.end(1) if after_tag else html.start(), 0
        if end < 0:
            return pieces, text
        pieces.append(text[:end].rstrip("\r"))
        text = text[end + skip :]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join), st.lists(st.integers(1, 12), max_size=40))
def test_chunks_cut_where_the_whole_text_is_cut(text: str, sizes: list[int]) -> None:
    pieces, rest = Pieces(), 0
    got: list[str] = []
    for size in [*sizes, len(text)]:
        got += pieces.add(text[rest : rest + size])
        rest += size
    assert (got, pieces.rest) == _cut_whole(text)


def test_a_long_line_is_searched_once() -> None:
    """Streamed one character at a time, a 20,000-character line is searched for a line end about once a
    character, not once a character per delta."""
    searched = 0
    real = LINE_END

    class Counting:
        def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
            nonlocal searched
            searched += len(text) - pos
            return real.search(text, pos)

    import sotrag.app.skeleton_blocks as blocks

    line = "1. " + "a `b: c` &amp; d <b> " * 1000
    blocks.LINE_END = Counting()  # type: ignore[assignment]
    try:
        parser = SkeletonParser()
        for char in line:
            parser.feed(char)
        parser.feed("\n")
    finally:
        blocks.LINE_END = real
    assert len(parser.finish()) == 1
    assert searched < 4 * len(line)
