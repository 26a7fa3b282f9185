"""What spans a few lines of a skeleton, each with its own small state: a list numbered "1.1" or by ordinal
words, a markdown table, an HTML list, a reasoning block, headings.

``SkeletonParser`` (``skeleton.py``) hands them lines and decides what their items mean for the list; what one
line says is ``skeleton_lines``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sotrag.app.skeleton_lines import (
    CLOSING_WORDS,
    HTML_BREAK,
    HTML_BREAK_AFTER_TAG,
    SETEXT,
    TABLE_SEPARATOR,
    THINK_CLOSE,
    THINK_OPEN,
    body_title,
    definition_term,
    html_piece,
    parse_dotted,
    parse_heading,
    parse_ordinal,
    table_row_title,
    title_key,
)

# A line ends at "\n" ("\r\n" too: the "\r" is cut off), a lone "\r" (once the next character shows it is lone)
# or a Unicode line or paragraph separator.
LINE_END = re.compile(r"\n|\r(?=[^\n])|[\u2028\u2029]")
_NON_SPACE = re.compile(r"\S")
# How far back an unclosed "<" (and the spaces and the ">" before it) is searched again with the next delta: a list
# tag longer than that ("<li" and its attributes) is not waited for.
_TAG_SPAN = 256


@dataclass
class Pieces:
    """Streamed text cut into complete lines, and a line into pieces before an HTML list tag that follows a tag
    (one-line lists, "<ol><li>A</li><li>B</li></ol>"), but not before one in prose ("1. Use <ol> for order" is one
    line). Each character is searched once: a long line streamed in small deltas costs its length, not its length
    squared; only what the next delta may still change (a final "\r", a tag not closed yet) is searched again."""

    _done: list[str] = field(default_factory=list)  # the current piece's text searched: no cut in it
    _window: str = ""  # the rest of it, searched again with the next delta
    _first: str = ""  # the current piece's first character that is no space, once one came

    @property
    def rest(self) -> str:
        """The text of the piece not complete yet."""
        return "".join(self._done) + self._window

    def clear(self) -> None:
        self._done, self._window, self._first = [], "", ""

    def add(self, delta: str) -> list[str]:
        """The pieces that ``delta`` completes, in order (without their line ends)."""
        window, pos, pieces = self._window + delta, 0, []
        while (cut := self._cut(window, pos)) is not None:
            end, skip = cut
            pieces.append(("".join(self._done) + window[pos:end]).rstrip("\r"))
            self._done, self._first, pos = [], "", end + skip
        keep = self._keep(window, pos)
        if keep > pos:
            self._first = self._first or _first_char(window, pos, keep)
            self._done.append(window[pos:keep])
        self._window = window[keep:]
        return pieces

    def _cut(self, window: str, pos: int) -> tuple[int, int] | None:
        """Where the piece that goes on at ``window[pos]`` ends, and how much the cut skips (1 for a line end)."""
        newline = LINE_END.search(window, pos)
        end, skip = (newline.start(), 1) if newline else (-1, 1)
        stop = end if end >= 0 else len(window)
        low = pos if self._done else pos + 1  # (a tag that starts the piece is no break)
        if window.find("<", low, stop) >= 0:
            after_tag = (self._first or _first_char(window, pos, len(window))) != "<"
            html = (HTML_BREAK_AFTER_TAG if after_tag else HTML_BREAK).search(window, low, stop)
            if html is not None:
                end, skip = html.end(1) if after_tag else html.start(), 0
        return None if end < 0 else (end, skip)

    def _keep(self, window: str, pos: int) -> int:
        """Where the text to search again starts: the spaces at the end and the character before them (a ">" that
        a list tag may follow; a final "\r" that is a line end unless a "\n" follows), or an unclosed "<" near the
        end with the spaces and the character before it."""
        tag = window.rfind("<", max(pos, len(window) - _TAG_SPAN))
        if tag < 0 or window.find(">", tag) >= 0:
            tag = len(window)
        start = tag
        while start > max(pos, tag - _TAG_SPAN) and window[start - 1].isspace():
            start -= 1
        return max(min(start - 1, len(window) - window.endswith("\r")), pos)


def _first_char(text: str, start: int, end: int) -> str:
    m = _NON_SPACE.search(text, start, end)
    return m.group() if m else ""


@dataclass
class Indents:
    """A list numbered one space deeper than the list ("   1." "   2." under "  1. T"): sub-items indented a little
    short, not items (the list's own next number there is its indentation drifting)."""

    last: int | None = None  # the number of its last line, while it goes on

    def nested(self, number: int | None, list_last: int | None) -> bool:
        """Whether a line numbered ``number`` one space deeper than the list (None for any other line) is such a
        sub-item; ``list_last``: the list's last number."""
        nested, self.last = self.last, None
        if number is None or list_last is None or number != (1 if nested is None else nested + 1):
            return False
        if nested is None and number > list_last:
            return False
        self.last = number
        return True


@dataclass
class Dotted:
    """A list numbered "1.1" "1.2" "2.1" from its start (an outline's section numbers). Its first line is held
    until the next one follows it, as "1.5 hours is enough." alone is prose."""

    last: tuple[int, ...] | None = None  # the number of the last item, once the list has started
    held: tuple[int, tuple[int, ...], str] | None = None  # indent, number, title of a first line

    @property
    def started(self) -> bool:
        return self.last is not None

    def read(self, indent: int, stripped: str, *, may_start: bool) -> list[tuple[int, str]] | None:
        """The items (indent, title) this line gives, the held first one included once the list starts;
        None when it is no item (yet): another line, a number that does not follow, or a first line held."""
        dotted = parse_dotted(stripped)
        if dotted is None or (self.last is not None and not _follows(self.last, dotted[0])):
            return None
        item = (indent, dotted[1])
        if self.last is None:
            if not may_start:
                return None
            held, self.held = self.held, (indent, dotted[0], dotted[1])
            if held is None or not _follows(held[1], dotted[0]):
                return None  # read as any other line meanwhile (a preamble, a heading)
            self.last = dotted[0]
            return [(held[0], held[2]), item]
        self.last = dotted[0]
        return [item]


@dataclass
class Table:
    """A markdown table: its first line is the header (never a point), then the separator; the rows after are
    points if the table came before any other item (the table is the list). A row with as many cells right
    after a blank line goes on with a table of points (a table split by a blank line)."""

    state: int = 0  # 0 no table, 1 header row read, 2 in a table of points, 3 in a table that is not the list
    is_list: bool = False  # a table's rows were points
    pipes: bool = False  # the last line had a "|": a table header, if a separator row follows
    columns: int = 0  # cells in the header row of the last table
    resume: bool = False  # a blank line came right after a row of a table of points: its rows may go on

    def blank(self) -> None:
        self.resume = self.resume or self.state == 2
        self.state, self.pipes = 0, False

    def read(self, row: str, *, resume: bool, first: bool) -> tuple[bool, str | None]:
        """Whether ``row`` (a stripped line) is a table line, and the point it gives, if any; ``resume``: a blank
        line came right before it, ``first``: no item came before it."""
        pipes, self.pipes = self.pipes, "|" in row
        if pipes and not self.state and TABLE_SEPARATOR.fullmatch(row):
            self.state = 1  # the line above, "# | Step | Details", was the header of a table without outer pipes
        if not (row.startswith("|") or (self.state and "|" in row)):
            self.state = 0
            return False, None
        cells = row.strip("|").count("|") + 1
        if resume and not self.state and cells == self.columns and not TABLE_SEPARATOR.fullmatch(row):
            self.state = 2
        if self.state == 0 or (self.state == 1 and not TABLE_SEPARATOR.fullmatch(row)):
            self.state, self.columns = 1, cells
        elif self.state == 1:
            self.state = 2 if first or self.is_list else 3
        elif self.state == 2:
            self.is_list = True
            return True, table_row_title(row)
        return True, None


@dataclass
class Html:
    """HTML lists: list tags open and close levels; a top-level ``<li>`` is an item (``<ol>`` numbered, ``<ul>``
    a bullet). A tag with prose after it outside a list ("<ol> is the ordered list tag") is prose."""

    open: list[str] = field(default_factory=list)  # open HTML lists ("ol", "ul"), outermost first
    top: int | None = None  # how many HTML lists were open at the first <li>: deeper ones are sub-items
    in_li: bool = False  # inside an <li>: its further lines are its text

    def read(self, piece: str) -> tuple[tuple[str, str] | None, str]:
        """The item (kind, title) a piece cut at ``HTML_BREAK`` gives, if any, and its text to read as a line
        of its own (after a list closes: "</ol> I hope this helps.")."""
        tag, text = html_piece(piece)
        if tag in ("ol", "ul") and not text:
            self.open.append(tag)
        elif tag == "li" and self.open:
            depth = len(self.open)
            self.top = depth if self.top is None else self.top
            self.in_li = True
            if depth == self.top:  # (not an item of a nested list)
                return ("num" if self.open[-1] == "ol" else "bullet", body_title(text)), ""
        elif tag in ("/ol", "/ul", "/li"):
            self.in_li = False
            if tag != "/li" and self.open:
                self.open.pop()
        return None, (text if text and not self.open else "")


@dataclass
class Reasoning:
    """A reasoning block ("<think>" ... "</think>") that a reasoning model writes before its answer: numbered
    steps and closing sentences in it are its thinking, not the list, and must not stop the skeleton either."""

    inside: bool = False

    def outside(self, line: str) -> tuple[str | None, bool]:
        """The part of ``line`` outside the block (None if nothing is), and whether everything before it was
        reasoning: a "</think>" with no "<think>" before it (a chat template that opens the block in the prompt)."""
        lone = False
        if not self.inside:
            opened = THINK_OPEN.match(line)
            if opened is None and THINK_CLOSE.search(line) is None:
                return line, False
            self.inside, lone = True, opened is None
            line = line[opened.end() :] if opened else line
        closed = THINK_CLOSE.search(line)
        if closed is None:
            return None, False
        self.inside, rest = False, line[closed.end() :]
        return (rest if rest.strip() else None), lone


@dataclass
class Ordinals:
    """A list numbered by ordinal words ("First, T") or fractions ("1/5 T"), ``parse_ordinal``. Its first two
    lines are held until the third follows: "First, ...", "Secondly, ..." (and "Finally, ...") are as often steps
    of a prose answer, "1/3 cup" and "2/3 cup" a recipe's lines; "Finally" and "Lastly" go on with a list of
    three or more, and a fraction's list keeps its denominator."""

    held: list[tuple[int, str]] = field(default_factory=list)  # indent, title of "First, T" and "Second, T"
    kind: str = ""  # "" for words, "/5" for fractions of 5

    def read(self, indent: int, stripped: str, *, started: bool, may_start: bool) -> list[tuple[int, str, int]] | None:
        """The items (indent, title, number; 0 for "the next") this line gives, the held ones included once the
        list starts; none when it is held, None when it is no ordinal item. ``may_start``: no item came before."""
        ordinal = parse_ordinal(stripped)
        if ordinal is None:
            return None
        number, title, kind = ordinal
        if number < 0:  # "The next step is ...": the one after the last
            number = 0 if started else len(self.held) + 1
        if started:  # ("Finally, I hope this helps." closes the answer: prose)
            closing = number == 0 and CLOSING_WORDS.match(title) is not None
            return [(indent, title, number)] if kind == self.kind and not closing else None
        if number == 1 and may_start:
            self.held, self.kind = [(indent, title)], kind
            return []  # held: no text that may end a list (a bullet list under "First, ..." goes on)
        if kind != self.kind:
            return None
        if number == 2 and len(self.held) == 1:
            self.held.append((indent, title))
            return []
        if number != 3 or len(self.held) != 2:
            return None
        return [(i, t, n) for n, (i, t) in enumerate(self.held, 1)] + [(indent, title, 3)]


@dataclass
class Headings:
    """Unnumbered headings and label lines (``parse_heading``), setext headings among them ("Title" over "-----"
    or "====="): the points of a list written as headings (``points``); and the terms of a definition list."""

    found: list[tuple[int, str, int]] = field(default_factory=list)  # level, title, bullet lines before
    first: bool = False  # a heading came before any bullet
    kept: str | None = None  # the line of text above a blank line: a definition may follow the blank

    def term(self, text: str | None, line: str) -> str | None:
        """The term of a definition list's entry when ``line`` is its definition (``definition_term``) and
        ``text`` the line above, or the line above a blank one (markdown extra allows one between them)."""
        kept, self.kept = self.kept, (text if not line.strip() else None)
        return definition_term(text or kept, line)

    def add(self, heading: tuple[int, str], items: int, *, bullets: bool) -> None:
        self.found.append((*heading, items))
        self.first = self.first or not bullets

    def setext(self, text: str | None, underline: str, items: int, *, bullets: bool, numbered: bool) -> bool:
        """``text`` (the line above, if it was text) over ``underline`` ("=====" or "-----"): a heading, read as
        "# T" or "## T" is, but of its own level (9 or 10: a "## Title" over setext sections is no section). False
        for another line, a lead-in or a generic title, and under a numbered list ("---" is a thematic break)."""
        if not text or numbered or not SETEXT.fullmatch(underline):
            return False
        heading = parse_heading("# " + text)
        if heading is not None:
            self.add((9 + (underline[0] == "-"), heading[1]), items, bullets=bullets)
        return heading is not None

    def points(self, items: int, base_indent: int) -> list[str]:
        """The titles of the most frequent heading level, when two or more and any bullets (``items``) come
        after the first heading, indented or under two headings; else none."""
        levels: dict[int, list[tuple[str, int]]] = {}
        for level, title, before in self.found:
            levels.setdefault(level, []).append((title, before))
        best = max(levels.values(), key=len, default=[])
        if len(best) < 2:
            return []
        if items:  # bullets too: they must come after the first heading, indented or under two headings
            ends = [before for _, before in best[1:]] + [items]
            under = sum(1 for (_, before), end in zip(best, ends, strict=True) if end > before)
            if best[0][1] > 0 or (under < 2 and base_indent < 2):
                return []
        distinct: dict[str, str] = {}
        for title, _ in best:
            distinct.setdefault(title_key(title), title)
        return list(distinct.values())


def _follows(last: tuple[int, ...], numbers: tuple[int, ...]) -> bool:
    """``numbers`` comes next after ``last`` in a list numbered "1.1" "1.2" "2.1"."""
    if len(numbers) != len(last):
        return False
    return (numbers[:-1] == last[:-1] and numbers[-1] == last[-1] + 1) or (
        numbers[0] == last[0] + 1 and all(n <= 1 for n in numbers[1:])
    )
