"""Skeleton handling: the regex that guides the skeleton request, and the parser that reads points back.

The parser is incremental (``SkeletonParser.feed``) so eager expansion can start a point the moment its line
is complete, and the same code reads a finished skeleton, so both paths agree on what the points are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# One word of a guided skeleton line: no spaces, no newlines, bounded so a weak model cannot run one
# "word" to the token limit.
_WORD = r"[^ \n]{1,24}"

_NUMBERED = re.compile(r"^\s*(?:\*\*)?(\d{1,2})\s*[.)]\s*(?:\*\*)?\s*(.*)$")
_BULLET = re.compile(r"^\s*[-*•+]\s+(.*)$")
MAX_TITLE_CHARS = 120


def skeleton_regex(min_points: int, max_points: int, min_words: int = 3, max_words: int = 8) -> str:
    """A regex for "1. w w w\\n2. ...\\n" with ``min_points``..``max_points`` points numbered in order and
    ``min_words``..``max_words`` words each. Optional points nest, so numbering can only go up by one."""

    def line(k: int) -> str:
        return rf"{k}\. {_WORD}( {_WORD}){{{min_words - 1},{max_words - 1}}}\n"

    return _numbered(line, min_points, max_points)


def skeleton_line_regex(min_points: int, max_points: int, max_chars: int = 80) -> str:
    """A cheaper guide, "1. <any text>\\n2. ..." with each line's text ``1..max_chars`` characters (no newline).

    xgrammar fills a line-level mask far faster than the word-bounded one (one character class per line
    instead of word/space alternations; docs/archive/benchmarks-history.md, issue 6), so it is the shape used
    for the guided retry."""

    def line(k: int) -> str:
        return rf"{k}\. [^\n]{{1,{max_chars}}}\n"

    return _numbered(line, min_points, max_points)


def _numbered(line: Callable[[int], str], min_points: int, max_points: int) -> str:
    """Lines 1..min_points, then optional lines that nest, so numbering can only go up by one."""
    tail = ""
    for k in range(max_points, min_points, -1):
        tail = f"({line(k)}{tail})?"
    return "".join(line(k) for k in range(1, min_points + 1)) + tail


def clean_title(raw: str) -> str:
    """Strip markdown emphasis and trailing punctuation; cut overlong titles at a word boundary."""
    title = raw.strip(" \t*_:")
    if len(title) > MAX_TITLE_CHARS:
        cut = title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]
        title = cut or title[:MAX_TITLE_CHARS]
    return title


def parse_line(line: str) -> tuple[str, str] | None:
    """Return (kind, title) for a numbered ("num") or bulleted ("bullet") line, else None."""
    m = _NUMBERED.match(line)
    if m:
        return "num", clean_title(m.group(2))
    m = _BULLET.match(line)
    if m:
        return "bullet", clean_title(m.group(1))
    return None


@dataclass
class SkeletonParser:
    """Feed skeleton text as it streams; read complete points as they appear.

    Rules: numbered lines ("1." or "1)") are points; bullets count only if the skeleton has no numbered line;
    empty titles and duplicates (case- and space-insensitive) are dropped; at most ``max_points`` are kept;
    points are renumbered 1..n in the order written.
    """

    max_points: int = 10
    _buffer: str = ""
    _text: str = ""
    _titles: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _bullets: list[str] = field(default_factory=list)
    blank_line: bool = False  # a blank line came after a numbered point: the list has probably ended

    @property
    def text(self) -> str:
        return self._text

    @property
    def points(self) -> list[str]:
        """Points found so far (bullets only when no numbered line was found)."""
        return list(self._titles) if self._titles else list(self._bullets)

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; return the numbered points completed by it (in order)."""
        self._text += delta
        self._buffer += delta
        new: list[str] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if not line.strip() and self._titles:
                self.blank_line = True
            title = self._take(line)
            if title is not None:
                new.append(title)
        return new

    def finish(self, *, truncated: bool = False) -> list[str]:
        """End of stream. The last line counts unless generation was cut by the token limit
        (then it is probably half a point). Returns all points."""
        if self._buffer and not truncated:
            self._take(self._buffer)
        self._buffer = ""
        return self.points

    def _take(self, line: str) -> str | None:
        parsed = parse_line(line)
        if parsed is None:
            return None
        kind, title = parsed
        key = " ".join(title.lower().split())
        if not key or key in self._seen:
            return None
        if kind == "bullet":
            if len(self._bullets) < self.max_points:
                self._bullets.append(title)
            return None
        if len(self._titles) >= self.max_points:
            return None
        self._seen.add(key)
        self._titles.append(title)
        return title


def parse_skeleton(text: str, max_points: int = 10) -> list[str]:
    """Parse a whole skeleton into point titles."""
    parser = SkeletonParser(max_points=max_points)
    parser.feed(text)
    return parser.finish()
