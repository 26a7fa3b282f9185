"""Skeleton handling: the regex that guides the skeleton request, and the parser that reads points back.

The parser is incremental (``SkeletonParser.feed``) so eager expansion can start a point the moment its line
is complete, and the same code reads a finished skeleton, so both paths agree on what the points are. What one
line says (its marker, its title) is ``skeleton_lines``; this module keeps what spans lines: which lines are the
list, its sub-items, tables, HTML lists, and whether the list has ended.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from sotrag.app.skeleton_blocks import Dotted, Headings, Html, Indents, Ordinals, Pieces, Reasoning, Table
from sotrag.app.skeleton_json import JsonReader
from sotrag.app.skeleton_lines import (
    BREAK_BEFORE_ITEM,
    IMAGE,
    LIST_OPENED,
    MAX_TITLE_CHARS,
    QUOTE,
    RECAP,
    REFERENCES,
    SUB_NUMBER,
    SUPERSCRIPT_DIGITS,
    THEMATIC_BREAK,
    XML_ITEM,
    body_title,
    clean_title,
    end_of_turn,
    html_piece,
    inline_items,
    is_html,
    parse_heading,
    parse_item,
    parse_line,
    title_key,
    visible,
    yaml_title,
)

__all__ = [
    "MAX_TITLE_CHARS",
    "SkeletonParser",
    "clean_title",
    "parse_heading",
    "parse_line",
    "parse_skeleton",
    "skeleton_line_regex",
    "skeleton_regex",
]

# One word of a guided skeleton line: no spaces, no newlines, bounded so a weak model cannot run one
# "word" to the token limit.
_WORD = r"[^ \n]{1,24}"

_DIGITS = re.compile(r"[^\w\n]{0,8}(?:[^\W\d_]{2,12}\s+)?(?:[^\W\d_]{2,12}\.?\s*#?)?(\d{1,2})(?!\d)")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]*_]*$")
# Words of a line that may lead in to more items ("Here are some more.", "In addition, consider these."):
# such a line is no sign that the list has ended. The common ones (``_MORE_WORDS``) lead in only where a
# lead-in has them: among a sentence's first words ("Also, ...", "Other tips.") or in one short sentence ("There
# are also others."); inside a paragraph's sentence ("Meals out cost more than cooking.") they are prose.
_MORE = re.compile(
    r"\b(?:following|here (?:are|is)|below|as follows|additionally|in addition|moreover|furthermore|"
    r"on top of|apart from|aside from|let's|let us|moving on|turning to|"
    # (and words that say what the item above means: an example is the item's text, no closing)
    r"for example|for instance|e\.g|i\.e|such as|in other words)\b",
    re.IGNORECASE,
)
_MORE_WORDS = re.compile(
    r"\b(?:next|also|another|on the other hand|in contrast|however|secondly|more|other|then|besides|additional|"
    r"beyond|lastly|finally)\b",
    re.IGNORECASE,
)
_LEAD_WORDS = 3  # how many first words of a sentence a lead-in's common word may be among
_SHORT_WORDS = 15  # a one-sentence line of at most this many words may lead in with any of them
_SENTENCE_BREAK = re.compile(r"[.!?][\"'”’)\]*_]*\s+\S")
# A label that opens the whole answer after the skeleton ("Answer:", "**Answer**", "## Detailed answer"), or a
# line that says the points are expanded next ("Now, let me expand on each point:", "Here is the full answer."):
# after a list, the list is over.
_ANSWER = re.compile(
    r"(?:#{1,6}\s+)?(\*\*|__)?(?:(?:the|my|final|full|complete|detailed|expanded|whole|long)\s+)*(?:answer|response)"
    r"(?:\s+in\s+(?:full|detail))?\s*:?\s*(?:\1\s*:?)?",
    re.IGNORECASE,
)
# The text of a heading or a bold label ("### Budget", "**Budget**: Track every expense.").
_LABEL = re.compile(r"#{1,6}\s+(.+)|\*\*(.+?)\*\*|__(.+?)__")
_EXPAND = re.compile(
    r"\b(?:(?:let me|let's|let us|i will|i'll|we will|we'll)\s+(?:now\s+)?(?:flesh out|go into (?:more )?detail|"
    r"(?:expand|elaborate)(?=\s+(?:on|upon|each|every|these|them|this)\b|\s*[:.,]|\s*$))"
    r"|(?:here is|here's|below is|now for|now,? the)\s+(?:the\s+|my\s+)?(?:full|complete|detailed|expanded|whole)"
    r"\s+(?:answer|response|version)|the answer in (?:full|detail))\b",
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


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


@dataclass
class _Kept:
    """The points kept so far: numbered titles (handed out as they come) and bullets, each without duplicates
    (case and spaces aside) and at most ``limit`` of them."""

    limit: int
    titles: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # titles kept since ``fresh`` last returned
    seen: set[str] = field(default_factory=set)  # the titles' keys

    def take(self, kind: str, title: str) -> None:
        key = title_key(title)
        if not key or key in self.seen:
            return
        if kind == "bullet":
            if len(self.bullets) < self.limit and key not in set(map(title_key, self.bullets)):
                self.bullets.append(title)
            return
        if len(self.titles) >= self.limit:
            return
        self.seen.add(key)
        self.titles.append(title)
        self.new.append(title)

    def known(self, title: str) -> bool:
        """A title already kept (numbered or a bullet)."""
        key = title_key(title)
        return bool(key) and (key in self.seen or key in map(title_key, self.bullets))

    def fresh(self) -> list[str]:
        """The titles kept since the last call."""
        new, self.new = self.new, []
        return new


@dataclass
class SkeletonParser:
    """Feed skeleton text as it streams; read complete points as they appear.

    Points: numbered lines (see ``parse_line``); bullets count only if the skeleton has no numbered line, and
    unnumbered headings or bold label lines only if it has neither (or they come first: see ``points``).
    The rows of a markdown table that comes before any item are numbered points (the table is the list; its
    header row is not a point; a blank line inside it does not end it), and so are the top-level ``<li>`` of an
    HTML list (``<ol>``; ``<ul>`` gives bullets). A list inside a blockquote ("> 1. T") is read like one outside it.
    Not points: a preamble or closing text, headings, lines inside a code fence (unless the only list is inside
    a plain or markdown fence: a skeleton wrapped in "```"), sub-items (any line indented deeper than the first
    list line, bullets under a numbered list, numbered lines of another family right under an item: "1." under
    "Step 1:", "(1)" under "1.", an ``<li>`` of a nested HTML list), "[1]" lines under a list written another way
    (a references list), and anything after a "References:" heading.
    A numbering that restarts (a second list from 1, after a lead-in or a heading) goes on: its points follow
    the first list's; after a closing sentence it is the whole answer starting (``list_ended``). Empty titles
    and duplicates (case- and space-insensitive) are dropped; at most ``max_points`` are kept; points are
    renumbered 1..n in the order written. CRLF, a lone CR or U+2028 line ends, and a last line without a newline
    are read like any other line; a byte order mark or zero-width space is ignored.
    Numberings that only show over two lines: a number alone on its line ("1." or "**1.**", then the title on
    the next line), and a list numbered "1.1" "1.2" from its start (its first point comes with its second line);
    "1." on every item (markdown numbers the list itself) goes on, and is no restart; and ordinal words ("First,
    T", ``Ordinals``), whose list starts at its third line. A skeleton written as JSON (``skeleton_json``) gives
    its elements as points; setext headings ("Title" over "-----") are headings.

    ``list_ended`` is the early-stop signal (see its docstring).
    """

    max_points: int = 10
    _pieces: Pieces = field(default_factory=Pieces)  # the text not read yet, cut into lines
    _chunks: list[str] = field(default_factory=list)  # the text fed (joined when read)
    _kept: _Kept = field(init=False)
    _base_indent: int | None = None  # indentation of the first list line: deeper ones are sub-items
    _numbered: bool = False  # a top-level numbered line was read: bullets are sub-items from now on
    _family: str | None = None  # the first numbered line's family: "bracket" ("[1] T"), "keyword" ("Step 1:"), ""
    _items: int = 0  # top-level list lines read (duplicates and empty titles included)
    _between: bool = False  # a top-level non-list line came after the last item
    _loose: bool = False  # such a line came between two items: text under items is part of the list
    _in_code: bool = False
    _fenced: SkeletonParser | None = None  # reads the first plain or markdown code fence, if any
    _in_fenced: bool = False  # inside that fence
    _refs: bool = False  # a references heading came after the points: nothing after it is a point
    _table: Table = field(default_factory=Table)
    _html: Html = field(default_factory=Html)
    _gap: bool = False  # a blank line came after the last list line (an item or a sub-item)
    _blank: bool = False  # the last line was blank (or a thematic break: "---")
    _subs: bool = False  # a sub-item (or indented text) came under the last item
    # a closing line came after a tight list: the end, unless the list goes on; _CLOSING_UNDER where it was right
    # under an item (then only a restarted numbering confirms it)
    _closing: int = 0
    _ended: bool = False
    _last_number: int | None = None  # the number of the last numbered item written with digits
    _auto: bool = True  # every such item had the same number ("1." "1." "1.": markdown numbers them itself)
    _pending: tuple[int, int | None, str] | None = None  # indent, number, family of a number alone on its line
    _dotted: Dotted = field(default_factory=Dotted)
    _headings: Headings = field(default_factory=Headings)
    _reasoning: Reasoning = field(default_factory=Reasoning)
    _over: bool = False  # an end-of-turn token came: nothing after it is read
    _json: JsonReader = field(default_factory=JsonReader)  # the skeleton written as JSON, once a line opened it
    _setext: str | None = None  # the last line, if it was top-level text: a heading if "---" or "===" follows
    _ordinals: Ordinals = field(default_factory=Ordinals)
    _indents: Indents = field(default_factory=Indents)
    _quoted: bool = False  # the line being read is in a blockquote ("> ")
    _list_quoted: bool = False  # the first item was
    _peeked: bool = False  # the line being written was read before its end (``_peek``)

    def __post_init__(self) -> None:
        self._kept = _Kept(self.max_points)

    @property
    def text(self) -> str:
        self._chunks[:] = ["".join(self._chunks)]  # (joined when read, not at every delta)
        return self._chunks[0]

    @property
    def points(self) -> list[str]:
        """Points found so far: numbered ones; else headings (``parse_heading``), when two or more of one level
        have bullets under them (or there are no bullets); else bullets; else those of a list written inside a
        plain or markdown code fence (a skeleton wrapped in "```")."""
        if self._kept.titles:
            return list(self._kept.titles)
        headed = self._headings.points(self._items, self._base_indent or 0)[: self.max_points]
        own = headed or list(self._kept.bullets)
        return own or (self._fenced.points if self._fenced is not None else [])

    @property
    def list_ended(self) -> bool:
        """True when the list has ended, as far as text can tell: at least two items, written tight (no top-level
        text between any two of them), then, after a blank line, a complete top-level prose line that ends a
        sentence ("Remember, ...", "I hope this helps!"), and then what shows the list does not go on: another
        line of prose, or an item that starts the list again (its number not above the last one's, unless every
        item had that number, or a title already read: the model writing the whole answer). An item that goes on
        (the next number, a new title) clears it, so a sentence written between two items never ends the list. A
        references or a recap heading ("## Summary") after the points ends it too, and so does the whole answer
        with no closing (``_again``: the first point again; an "Answer" label, "Now, let me expand on each
        point:"). A line that may lead in to more ("...:", words such as "here are", or "also", "more", "next"
        where a lead-in has them: ``_more``), a heading, a bold label, an image or a thematic break ("---") neither
        ends nor confirms, and text under an item does not end it when the list has shown text between its items,
        nor does prose right under (no blank line) an item or its sub-items: markdown reads it as the item's text
        (a sentence there may still be a closing that a restarted numbering confirms), nor a bullet right under a
        sentence (the sentence led in to it), nor anything once a heading came before the first bullet. Only
        complete lines count (but a line that writes the list again, once its title and ": " are: ``_peek``), so
        the stop never cuts a point's line; it comes one line after the closing at the earliest (a closing
        followed by the end of the text needs no stop)."""
        return self._ended

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; return the numbered points completed by it (in order)."""
        before = self._chunks[-1][-1:] if self._chunks else ""
        self._chunks.append(delta)
        for piece in (pieces := self._pieces.add(delta)):
            self._line(piece)
        self._peeked = self._peeked and not pieces
        if not self._peeked and not self._ended and ": " in before + delta:
            self._peek()
        return self._kept.fresh()

    def _peek(self) -> None:
        """The line being written, once its title is complete ("1. Budget: Tr"): if it writes the list again
        (``_again``), the list has ended now, not at the line's end (such a line is no point: nothing is cut).
        Read once a line (``feed`` calls it when a ": " comes), so a long line costs its length once."""
        line = self._pieces.rest
        head, colon, _ = line.partition(": ")
        if not colon:
            return
        self._peeked = True
        if head.count("**") % 2 or head.count("__") % 2:
            return  # ("**1. Budget: Track**": the bold title may be all of it)
        item = parse_item(line)
        number = _item_number(line.strip()) if item and item[0] == "num" else None
        title = item[1] if item else _label_title(line.strip())
        if title is not None and self._again(title, number):  # (and the whole line's reading agrees)
            trial = copy.deepcopy(self)
            trial._line(line.rstrip("\r"))
            self._ended = trial._ended

    def finish(self, *, truncated: bool = False) -> list[str]:
        """End of stream. The last line counts unless generation was cut by the token limit
        (then it is probably half a point). Returns all points."""
        rest = self._pieces.rest
        self._pieces.clear()
        if rest and not truncated:
            self._line(rest.rstrip("\r"))
        return self.points

    def _line(self, line: str) -> None:
        """Read one complete line: keep its point, if any, and update the list-end state."""
        if self._over:
            return
        if (cut := end_of_turn(line)) is not None:  # the turn is over: read what came before the token, no more
            self._line(line[:cut])
            self._over = self._ended = True
            return
        outside, start_over = self._reasoning.outside(visible(line))
        if start_over:  # what was read was reasoning ("</think>" alone): read again from here
            kept = {"_chunks": self._chunks, "_pieces": self._pieces, "_reasoning": self._reasoning}
            fresh = SkeletonParser(max_points=self.max_points)
            for f in fields(self):
                setattr(self, f.name, kept.get(f.name, getattr(fresh, f.name)))
        if outside is None:
            return
        line = QUOTE.sub(r"\1", outside)
        self._quoted = line != outside
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            self._in_code = not self._in_code
            first = self._in_code and self._fenced is None and stripped.strip("`~ ").lower() in _PLAIN_FENCES
            if first:
                self._fenced = SkeletonParser(max_points=self.max_points)
            self._in_fenced = first
            return
        if self._in_code:
            if self._in_fenced and self._fenced is not None:
                self._fenced._line(line)
            return
        if self._json_line(line):
            return
        setext, self._setext = self._setext, None
        headings, bullets = self._headings, bool(self._kept.bullets)
        if headings.setext(setext, stripped, self._items, bullets=bullets, numbered=self._numbered):
            return
        if term := headings.term(setext, stripped):  # "Term" then ": definition": the term is an item
            self._list_item(0, "num", term, None, family="definition")
            return
        if not stripped or THEMATIC_BREAK.fullmatch(stripped):  # "---" between items separates them as a blank does
            self._table.blank()
            self._gap = self._blank = True
            return
        after_blank, self._blank = self._blank, False
        resume, self._table.resume = self._table.resume, False
        if is_html(stripped):
            item, rest = self._html.read(stripped)
            if item is not None:
                self._item(self._base_indent or 0, *item)
            if rest:
                self._line(rest)
            return
        if self._html.in_li:
            return  # more text of an HTML item
        is_row, title = self._table.read(stripped, resume=resume, first=not self._items)
        if title is not None:
            self._item(self._base_indent or 0, "num", title)
        if is_row:
            return
        if stripped.startswith("<") and not XML_ITEM.fullmatch(stripped):  # "<p>I hope this helps.</p>"
            line = stripped = html_piece(stripped)[1]
        if opened := LIST_OPENED.search(stripped):
            self._html.open.append(opened.group(1).lower())
            line = stripped = stripped[: opened.start()]
        for part in filter(str.strip, BREAK_BEFORE_ITEM.split(line)):
            for piece in inline_items(part):  # (one piece, unless a list is written on one line)
                self._text_line(piece, piece.strip(), after_blank=after_blank)

    def _text_line(self, line: str, stripped: str, *, after_blank: bool) -> None:
        """A line of markdown or prose: an item, a sub-item, a heading, or text that may end the list."""
        indent = _indent(line)
        if self._title_under_number(line, stripped):
            return
        if self._dotted_item(indent, stripped):
            return
        base = self._base_indent
        nested = _numbered_as(line) if base is not None and indent == base + 1 else None  # ("   1." under "  1. T")
        if self._indents.nested(nested, self._last_number):
            self._sub_item()
            return
        if (base is not None and indent > base + 1 and not self._drifts(line, indent - base)) or (
            self._numbered and SUB_NUMBER.match(stripped)  # "2.1 ...": not text that may end the list
        ):
            self._sub_item()
            return  # a sub-item or a continuation of the item above
        if self._refs or (self._items and REFERENCES.fullmatch(stripped)) or self._recap(stripped):
            self._refs = self._ended = True
            return
        item = parse_item(line)
        ordinals = self._ordinal_items(indent, stripped) if item is None else None
        if ordinals:
            return
        held = ordinals is not None  # ("First, T" before "Third": a heading still, no text that may end a list)
        if item is not None and item[2] in ("bracket", "super") and self._items and self._family != item[2]:
            item = None  # "[1] ..." or "¹ ..." under a list written another way: references or footnotes
        again = item is not None and self._again(item[1], _item_number(stripped) if item[0] == "num" else None)
        if item is not None and item[0] == "num" and not again and self._sub_family(item[2], _item_number(stripped)):
            self._sub_item()
            return
        if item is not None and (item[0] == "num" or not self._numbered):
            number = _item_number(stripped) if item[0] == "num" else None
            if item[0] == "num" and not item[1]:
                self._pending = (indent, number, item[2])  # "1." alone: its title is on the next line
                return
            self._list_item(indent, item[0], item[1], number, family=item[2])
            return
        if item is None and not self._numbered and (heading := parse_heading(stripped)) is not None:
            self._headings.add(heading, self._items, bullets=bool(self._kept.bullets))
        elif item is None and not held:
            self._setext = stripped
        if item is not None:
            if (self._closing == _CLOSING and after_blank) or self._ended or self._again(item[1], None):
                self._ended = True  # a bullet after the closing (or the list again): the numbered list does not go on
                return
            self._closing = 0  # (a sentence right above the bullet led in to it)
            self._sub_item()
            return  # a bullet under a numbered list
        if not held:
            self._prose(stripped)

    def _json_line(self, line: str) -> bool:
        """A line of a skeleton written as JSON (``skeleton_json``), which opens before any item: its elements
        are the points, and its last bracket ends the list (JSON Lines, one object or string a line, go on)."""
        titles = self._json.read(line, first=not self._items)
        for title in titles or ():
            self._item(0, "num", title)
        self._ended = self._ended or (self._json.ended and self._items > 0)
        return titles is not None

    def _ordinal_items(self, indent: int, stripped: str) -> int | None:
        """A line numbered by an ordinal word (``Ordinals``): an item once the list is numbered that way. How many
        items it gave (0: held until the list starts), or None for another line."""
        started = self._family == "ordinal"
        if not started and (self._family is not None or self._numbered):
            return None
        items = self._ordinals.read(indent, stripped, started=started, may_start=not self._items)
        for item_indent, title, number in items or ():
            self._list_item(item_indent, "num", title, number or (self._last_number or 0) + 1, family="ordinal")
        return None if items is None else len(items)

    def _sub_item(self) -> None:
        """A sub-item or an item's continuation: text right under it is its item's, unless a blank line and
        prose came before it (then it sits under that prose)."""
        self._gap = self._gap and self._between
        self._subs = True

    def _drifts(self, line: str, deeper: int) -> bool:
        """A numbered line up to 2 spaces deeper than the list (less than a sub-item needs under "1. ") with its next
        number and nothing under the last item: the indentation drifting, not a sub-item ("  2." after "1.")."""
        last, item = self._last_number, parse_item(line)
        goes_on = item is not None and item[0] == "num" and item[2] == self._family and last is not None
        return goes_on and not self._subs and deeper <= 2 and _item_number(line.strip()) == (last or 0) + 1

    def _recap(self, line: str) -> bool:
        """A recap's heading after the items and a blank line ("## Summary"; not right under an item, where it
        is the item's, nor in a list of headings, where it is one)."""
        if not (self._items and self._gap and RECAP.fullmatch(line)):
            return False
        return self._numbered or not self._headings.points(self._items, self._base_indent or 0)

    def _prose(self, stripped: str) -> None:
        """A top-level line that is no item: a preamble, text between or under items, or a closing."""
        if self._items == 0 or IMAGE.fullmatch(stripped) or (self._quoted and not self._list_quoted):
            return  # a preamble, an image or a quote under a list outside quotes: no sign either way
        # prose right under an item or its sub-items (no blank line since) is its text, as markdown reads it (a
        # lazy continuation line): it never shows that the list is over (a sentence there may still be a closing,
        # which a restarted numbering after it confirms)
        under = not self._gap
        # (bullets after a heading may be its sub-items, the headings the points: no end from bullets then)
        headed = self._headings.first and not self._numbered
        label = _label_title(stripped)  # a heading or a bold label: the list again, if it is the first point's
        tight = self._items >= 2 and not (self._loose or headed)
        if (tight and _opens_answer(stripped, under=under)) or (label is not None and self._again(label, None)):
            self._ended = True  # the whole answer starts: the list is over
            return
        self._between = True
        if self._closing == _CLOSING and not under and not _leads_on(stripped):
            self._ended = True  # prose after the closing: the list is over
        elif self._items >= 2 and not (self._loose or headed) and _is_closing(stripped):
            self._closing = _CLOSING_UNDER if under else _CLOSING

    def _list_item(self, indent: int, kind: str, title: str, number: int | None, *, family: str) -> None:
        """A top-level item line: a point, unless it starts the list again after a closing."""
        if ((self._closing or self._ended) and self._starts_again(number, title)) or self._again(title, number):
            self._ended = True  # after a closing, the list again from its start: the whole answer follows
            return
        if kind == "num" and self._family is None:
            self._family = family
        if number is not None:
            self._auto = self._auto and self._last_number in (None, number)
            self._last_number = number
        self._item(indent, kind, title)

    def _sub_family(self, family: str, number: int | None) -> bool:
        """A numbered line of another family than the list's ("1." under "Step 1:" or "一、" items, "Example 1:",
        "- 1." or "(1)" under "1." items) is a sub-item, unless it goes on with the list after a blank line
        ("Step 3: T" after "2. T")."""
        first, last = self._family, self._last_number
        if first is None or family == first or {first, family} <= {"", "bracket"}:
            return False
        return not (self._gap and number is not None and last is not None and number == last + 1)

    def _title_under_number(self, line: str, stripped: str) -> bool:
        """The line after a number written alone ("1." then "Title", "**1.**" then "**Title**"): its title,
        unless it is an item itself."""
        pending, self._pending = self._pending, None
        if pending is None or parse_item(line) is not None:
            return False
        indent, number, family = pending
        heading = parse_heading(stripped)
        title = heading[1] if heading else yaml_title(stripped) or body_title(stripped)
        self._list_item(indent, "num", title, number, family=family)
        return True

    def _dotted_item(self, indent: int, stripped: str) -> bool:
        """A line numbered "1.2" that is an item of a list numbered that way (``Dotted``); False for any other
        line, and for "2.1" under "2." (a sub-item)."""
        if self._numbered and not self._dotted.started:
            return False
        items = self._dotted.read(indent, stripped, may_start=not self._items)
        for item_indent, title in items or ():
            self._list_item(item_indent, "num", title, None, family="")
        return items is not None

    def _starts_again(self, number: int | None, title: str) -> bool:
        """An item that repeats the list rather than continuing it: numbered from (or below) where the list
        was (the same number goes on where every item had it), or with a title already read."""
        last = self._last_number
        if number is not None and last is not None and number <= last and not (self._auto and number == last):
            return True
        return self._kept.known(title)

    def _again(self, title: str, number: int | None) -> bool:
        """The list written again (the model going on to its whole answer): the first point's title numbered from
        where the list was or below, or after a blank line as a bullet, bold label or heading (in a list not
        numbered, only right after it: a heading's bullets may repeat another's)."""
        if len(points := self.points) < 2 or not _same_start(title_key(title), title_key(points[0]), number):
            return False
        last = self._last_number
        if number is not None and last is not None:  # ("1." on every item goes on)
            return number <= last and (not (self._auto and number == last) or self._gap or self._between)
        held = self._between or self._headings.first or self._ordinals.held
        return number == 1 or (self._gap and (self._numbered or not held))

    def _item(self, indent: int, kind: str, title: str) -> None:
        """A top-level list item: count it, clear the end signal, keep its point."""
        if self._base_indent is None:
            self._base_indent, self._list_quoted = indent, self._quoted
        self._numbered = self._numbered or kind == "num"
        self._items += 1
        self._loose = self._loose or self._between
        self._between = self._ended = self._gap = self._subs = False
        self._closing = 0
        self._kept.take(kind, title)


_CLOSING, _CLOSING_UNDER = 2, 1


def _same_start(key: str, first: str, number: int | None) -> bool:
    """An item that is the first point again: its title, or, numbered 1, its title going on past a sentence's or a
    clause's end in the same line (the whole answer's "1. Title. Its text ...", a sentence item cut to its title
    in the skeleton)."""
    if key == first:
        return True
    return number == 1 and key.startswith(first) and key[len(first) : len(first) + 2] in (". ", ", ", "; ", "! ")


_PLAIN_FENCES = (
    "",
    "markdown",
    "md",
    "text",
    "txt",
    "plaintext",
    "json",
    "json5",
    "jsonc",
    "jsonl",
    "ndjson",
    "yaml",
    "yml",
)


def _numbered_as(line: str) -> int | None:
    """The number of a numbered item line written with digits; None for another line."""
    item = parse_item(line)
    return _item_number(line.strip()) if item is not None and item[0] == "num" else None


def _item_number(line: str) -> int | None:
    """The number of a numbered item written with digits ("2.", "**2.**", "### 2)", "[2]", "Step 2:")."""
    m = _DIGITS.match(line.translate(SUPERSCRIPT_DIGITS))
    return int(m.group(1)) if m else None


def _leads_on(line: str) -> bool:
    """A line that may lead in to more of the list (a heading, a bold label, "...:", "also", "here are")."""
    return line.startswith(("#", "**", "__", "|", ">")) or line.rstrip("*_ ").endswith(":") or _more(line)


def _more(line: str) -> bool:
    """Words that may lead in to more items (``_MORE``; a common one only where a lead-in has it)."""
    if _MORE.search(line):
        return True
    breaks = list(_SENTENCE_BREAK.finditer(line))
    for start in (0, *(m.end() - 1 for m in breaks)):  # among a sentence's first words
        if _MORE_WORDS.search(" ".join(line[start:].split()[:_LEAD_WORDS])):
            return True
    return not breaks and len(line.split()) <= _SHORT_WORDS and bool(_MORE_WORDS.search(line))


def _opens_answer(line: str, *, under: bool) -> bool:
    """A label that opens the whole answer ("Answer:", "## Detailed answer"), or, after a blank line (not
    ``under`` an item), a line that says the points are expanded next ("Now, let me expand on each point:")."""
    return bool(_ANSWER.fullmatch(line)) or (not under and bool(_EXPAND.search(line)))


def _label_title(line: str) -> str | None:
    """The title of a heading or a bold label ("### Budget", "**Budget**: Track every expense."), else None."""
    m = _LABEL.match(line)
    return clean_title(next(g for g in m.groups() if g)) if m else None


def _is_closing(line: str) -> bool:
    """A prose line that ends a sentence: not a heading, a bold label, a lead-in ending with ":", or a line
    with words that may lead in to more items."""
    if line.startswith(("#", "**", "__", "|", ">")):
        return False
    return bool(_SENTENCE_END.search(line)) and not _more(line)


def parse_skeleton(text: str, max_points: int = 10) -> list[str]:
    """Parse a whole skeleton into point titles."""
    parser = SkeletonParser(max_points=max_points)
    parser.feed(text)
    return parser.finish()
