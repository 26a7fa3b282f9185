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

MAX_TITLE_CHARS = 120

# A point's marker, after any heading hashes and an opening emphasis: "1." "1)" "1.)" "1:" "(1)" "1、" (not "1.5"
# or "10:30": a digit may not follow), "1 - " (a spaced dash), "#1 ", "II." (Roman, up to XXXIX), "1️⃣", "①", or
# "Step 1:" style words ("Tip #2:", "Step Three:").
_NUMBER = re.compile(
    r"(?:\((\d{1,2})\)|(\d{1,2})(?:\.\)|[.):]))(?=\s|\*|_|$|[^\W\d_])|\d{1,2}[\u3001\uff0e\uff09]"
    r"|\d{1,2}\s[-\u2013\u2014](?=\s)|#\d{1,2}(?=\s)|[\u2460-\u2473\u2776-\u2793](?=\s)"
    r"|X{0,3}(?:IX|IV|V?I{0,3})[.)](?=\s)(?<!^[.)])|\d\ufe0f?\u20e3"
)
_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_KEYWORD = re.compile(
    r"(?i:step|point|tip|part|section|stage|phase|item|idea|reason|way)\s+#?"
    rf"(\d{{1,2}}|(?i:{_NUMBER_WORDS}))\s*(?:[:.)](?!\d)|\s[-–—](?=\s))"
)
# Bullets: "-", "*", "•", "+", "–", "◦", "▪", "●", "‣", "·", arrows, check marks, stars and other symbol or
# emoji bullets ("✅", "🔹", "👉", "→", "➤", "★"; not the smileys a closing line may start with) and a space,
# then an optional task box ("[ ]", "[x]"). A single letter ("a." "B)" "(c)") reads as a bullet too, so a
# lettered list under a numbered one stays its sub-items.
_BULLET = re.compile(
    r"(?:[-*•+–◦▪●‣·\u2190-\u21ff\u2600-\u27bf\u2b00-\u2bff\u25a0-\u25ff\U0001f300-\U0001f5ff\U0001f680-\U0001faff]\ufe0f?"
    r"|\(?[a-zA-Z][.)])\s+(?:\[[ xX]\]\s+)?"
)
_HEADING = re.compile(r"#{1,6}\s+")
# A sub-number ("2.1 Details", "**1.2.3**"): under a point even when it is not indented.
_SUB_NUMBER = re.compile(r"(?:\*\*|__)?\d{1,2}(?:\.\d{1,2})+\.?(?=[\s*_])")
_EMPHASIS = re.compile(r"\*\*|__|\*(?!\s)")
# Where a title ends and its description starts: ": " (or a final ":"), or a spaced dash.
_TITLE_END = re.compile(r":\s|:$|\s[-–—]\s")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# An unnumbered heading ("## T") or a line that is a bold label ("**T**", "**T:** description").
_LABEL_LINE = re.compile(r"(?:(#{1,6})\s+(.+)|(\*\*|__)(.+?)\3(.*))$")
# A heading that names the skeleton itself ("Skeleton", "Answer outline", "The plan"), not a point: the whole title.
_GENERIC = re.compile(
    r"(?:(?:here is|here's|the|my|a|an|your)\s+)?(?:answer\s+|response\s+)?"
    r"(?:skeleton|outline|answer|response|plan|overview|summary)(?:\s+(?:skeleton|outline))?"
    r"(?:\s+(?:of|for)\s+(?:the|my|this|your)\s+(?:answer|response|question))?",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]*_]*$")
# Words of a line that may lead in to more items ("Here are some more.", "In addition, consider these."):
# such a line is no sign that the list has ended.
_MORE = re.compile(
    r"\b(?:following|here (?:are|is)|below|as follows|next|additionally|also|another|in addition|moreover|"
    r"furthermore|on the other hand|in contrast|however|secondly|more|other|then|besides|additional)\b",
    re.IGNORECASE,
)


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
    """A point title without markdown or a description: emphasis and links unwrapped, the part before a
    ": " or a spaced dash, no trailing punctuation; an overlong title is cut at a word boundary."""
    title = _LINK.sub(r"\1", raw)
    title = title.replace("**", "").replace("__", "")
    title = _TITLE_END.split(title.strip(), maxsplit=1)[0]
    title = " ".join(title.split()).strip(" \t*_:;,.-–—")
    if len(title) > MAX_TITLE_CHARS:
        cut = title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:.-–—")
        title = cut or title[:MAX_TITLE_CHARS]
    return title


def _emphasis_label(body: str) -> str | None:
    """The emphasised text of ``**Title**: description`` (a label: nothing, a separator or a new sentence after
    it); None when the line only starts with an emphasised word ("**Don't** skip breakfast")."""
    opener = _EMPHASIS.match(body)
    if opener is None:
        return None
    mark = opener.group()
    close = body.find(mark, len(mark))
    if close < 0:
        return None
    after = body[close + len(mark) :].lstrip()
    if after and after[0] not in ":.-–—" and not after[0].isupper():
        return None
    return body[len(mark) : close]


def parse_line(line: str) -> tuple[str, str] | None:
    """Return (kind, title) for a numbered ("num") or bulleted ("bullet") line, else None.

    Numbered: "1. T", "1) T", "1: T", "(1) T", "IV. T", "1️⃣ T", "Step 1: T" (also Point/Tip/Part/Section/...),
    after an optional "#" heading, with emphasis around the number, the title or both ("**1.** T", "**1. T**",
    "1. **T**: d"). The title is what ``clean_title`` keeps; a bold label ("**T**: d", "**T.** D") is the title.
    """
    s = line.strip()
    heading = _HEADING.match(s)
    if heading:
        s = s[heading.end() :]
    opener = _EMPHASIS.match(s)
    mark = opener.group() if opener else ""
    rest = s[len(mark) :].lstrip()
    marker = _NUMBER.match(rest) or _KEYWORD.match(rest)
    if marker is None:
        bullet = None if heading or mark else _BULLET.match(s)
        if bullet is None:
            return None
        body = s[bullet.end() :].strip()
        label = _emphasis_label(body)
        return "bullet", clean_title(body if label is None else label)
    body = rest[marker.end() :].strip()
    if mark and body.startswith(mark):  # "**1.** Title": the emphasis held only the number
        body = body[len(mark) :].strip()
    elif mark:  # "**1. Title**: description": the emphasis opened before the number holds the title
        close = body.find(mark)
        return "num", clean_title(body if close < 0 else body[:close])
    label = _emphasis_label(body)
    return "num", clean_title(body if label is None else label)


def parse_heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an unnumbered heading or bold label line; level 7 is a bold label. None for a lead-in
    ("**Skeleton:**", "## Outline") or a line that only starts with a bold word."""
    m = _LABEL_LINE.match(line.strip())
    if m is None:
        return None
    if m.group(1):
        level, raw, after = len(m.group(1)), m.group(2), ""
    else:
        level, raw, after = 7, m.group(4), m.group(5).strip()
        if after and after[0] not in ":.-–—" and not after[0].isupper():
            return None
    if not after.lstrip(":").strip() and (raw.rstrip().endswith(":") or after.startswith(":")):
        return None  # a label with nothing after its colon leads in to what follows
    title = clean_title(raw)
    return (level, title) if title and not _GENERIC.fullmatch(title) else None


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


@dataclass
class SkeletonParser:
    """Feed skeleton text as it streams; read complete points as they appear.

    Points: numbered lines (see ``parse_line``); bullets count only if the skeleton has no numbered line, and
    unnumbered headings or bold label lines only if it has neither (or they come first: see ``points``).
    Not points: a preamble or closing text, headings, lines inside a code fence, and sub-items (any line
    indented deeper than the first list line, and bullets under a numbered list). A numbering that restarts
    (a second list from 1) goes on: its points follow the first list's. Empty titles and duplicates (case- and
    space-insensitive) are dropped; at most ``max_points`` are kept; points are renumbered 1..n in the order
    written. CRLF line ends and a last line without a newline are read like any other line.

    ``list_ended`` is the early-stop signal (see its docstring).
    """

    max_points: int = 10
    _buffer: str = ""
    _text: str = ""
    _titles: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _bullets: list[str] = field(default_factory=list)
    _base_indent: int | None = None  # indentation of the first list line: deeper ones are sub-items
    _numbered: bool = False  # a top-level numbered line was read: bullets are sub-items from now on
    _items: int = 0  # top-level list lines read (duplicates and empty titles included)
    _between: bool = False  # a top-level non-list line came after the last item
    _loose: bool = False  # such a line came between two items: text under items is part of the list
    _in_code: bool = False
    _ended: bool = False
    _headings: list[tuple[int, str, int]] = field(default_factory=list)  # level, title, bullet lines before
    _headings_first: bool = False  # a heading came before any bullet

    @property
    def text(self) -> str:
        return self._text

    @property
    def points(self) -> list[str]:
        """Points found so far: numbered ones; else headings (``parse_heading``), when two or more of one level
        have bullets under them (or there are no bullets); else bullets."""
        if self._titles:
            return list(self._titles)
        return self._heading_points() or list(self._bullets)

    def _heading_points(self) -> list[str]:
        levels: dict[int, list[tuple[str, int]]] = {}
        for level, title, before in self._headings:
            levels.setdefault(level, []).append((title, before))
        best = max(levels.values(), key=len, default=[])
        if len(best) < 2:
            return []
        if self._items:  # bullets too: they must come after the first heading, indented or under two headings
            ends = [before for _, before in best[1:]] + [self._items]
            under = sum(1 for (_, before), end in zip(best, ends, strict=True) if end > before)
            if best[0][1] > 0 or (under < 2 and (self._base_indent or 0) < 2):
                return []
        distinct: dict[str, str] = {}
        for title, _ in best:
            distinct.setdefault(_key(title), title)
        return list(distinct.values())[: self.max_points]

    @property
    def list_ended(self) -> bool:
        """True when the list has ended, as far as text can tell: at least two items, written tight (no
        top-level text between any two of them), and then a complete top-level prose line that ends a sentence
        ("Remember, ...", "I hope this helps!"). A line that may lead in to more ("...:", or words such as
        "here are", "also", "more", "next"), a heading or a bold label does not end it, and neither does text
        under an item when the list has shown text between its items, nor anything once a heading came before
        the first bullet; a new item clears it. Only complete lines count, so the stop never cuts a point's
        line. Not certain (a model may still write a second list after a plain sentence), so it is kept rare."""
        return self._ended

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; return the numbered points completed by it (in order)."""
        self._text += delta
        self._buffer += delta
        new: list[str] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            title = self._line(line.rstrip("\r"))
            if title is not None:
                new.append(title)
        return new

    def finish(self, *, truncated: bool = False) -> list[str]:
        """End of stream. The last line counts unless generation was cut by the token limit
        (then it is probably half a point). Returns all points."""
        if self._buffer and not truncated:
            self._line(self._buffer.rstrip("\r"))
        self._buffer = ""
        return self.points

    def _line(self, line: str) -> str | None:
        """Read one complete line: keep its point, if any, and update the list-end state."""
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            self._in_code = not self._in_code
            return None
        if self._in_code or not stripped:
            return None
        indent = _indent(line)
        if self._base_indent is not None and indent > self._base_indent + 1:
            return None  # a sub-item or a continuation of the item above
        if self._numbered and _SUB_NUMBER.match(stripped):
            return None  # "2.1 ...": a sub-item of the item above, not text that may end the list
        parsed = parse_line(line)
        if parsed is not None and (parsed[0] == "num" or not self._numbered):
            if self._base_indent is None:
                self._base_indent = indent
            self._numbered = self._numbered or parsed[0] == "num"
            self._items += 1
            self._loose = self._loose or self._between
            self._between = self._ended = False
            return self._take(*parsed)
        if parsed is None and not self._numbered and (heading := parse_heading(stripped)) is not None:
            self._headings.append((*heading, self._items))
            self._headings_first = self._headings_first or not self._bullets
        if parsed is not None or self._items == 0:
            return None  # a bullet under a numbered list; a preamble
        self._between = True
        # (bullets after a heading may be its sub-items, the headings the points: no end from bullets then)
        headed = self._headings_first and not self._numbered
        if self._items >= 2 and not self._loose and not headed and _is_closing(stripped):
            self._ended = True
        return None

    def _take(self, kind: str, title: str) -> str | None:
        key = _key(title)
        if not key or key in self._seen:
            return None
        if kind == "bullet":
            if len(self._bullets) < self.max_points and key not in set(map(_key, self._bullets)):
                self._bullets.append(title)
            return None
        if len(self._titles) >= self.max_points:
            return None
        self._seen.add(key)
        self._titles.append(title)
        return title


def _key(title: str) -> str:
    return " ".join(title.lower().split())


def _is_closing(line: str) -> bool:
    """A prose line that ends a sentence: not a heading, a bold label, a lead-in ending with ":", or a line
    with words that may lead in to more items."""
    if line.startswith(("#", "**", "__", "|", ">")):
        return False
    return bool(_SENTENCE_END.search(line)) and not _MORE.search(line)


def parse_skeleton(text: str, max_points: int = 10) -> list[str]:
    """Parse a whole skeleton into point titles."""
    parser = SkeletonParser(max_points=max_points)
    parser.feed(text)
    return parser.finish()
