"""Citation markers read back from streamed model text, checked against the passages the model was given.

The model is asked to cite passages as ``[n]``; models also write ``[n, m]``, ``[n-m]``, ``[n][m]``,
``[Source n]``, ``[^n]``, ``【n】`` and ``【n†source】``. ``CitationStream`` reads them as text streams in:
it never shows half a marker (a possible marker split across deltas is held back until it closes or can no
longer be one), keeps markers whose passages exist (rewritten as ``[n, m]``), and removes the numbers that
name no passage, counting them, so an invalid citation never reaches a user.

Rules kept simple on purpose: code is never read for markers: a fenced block (a run of three or more backticks
at the start of a line, to the next such run) or an inline span (a run of backticks, to the same run or to the end
of its line: one stray backtick never turns reading off for the rest of the text); nor is a URL (a run of
non-space characters holding "://": ``https://x.org/a[2]b`` is a link, not a citation); ``(n)`` is never a marker
(prose lists use it); numbers have 1-3 digits and no leading zero (``[2023]`` and ``x[0]`` are text); a range spans
at most 50 numbers. A text that ends inside a marker ("... [1", a point cut by its token limit) never shows it
half-written: it is read as closed after its last whole number ("[1]"), or dropped when it holds none.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import regex

_KEYWORD = r"(?:sources?|passages?|docs?|documents?|refs?|references?|citations?)\s*:?\s*"
_ITEM = rf"(?:{_KEYWORD})?[1-9]\d{{0,2}}(?:\s*[-–]\s*[1-9]\d{{0,2}})?"
_SEP = r"\s*(?:,|;|&|and)\s*"
MARKER = regex.compile(rf"[\[【]\^?\s*{_ITEM}(?:{_SEP}{_ITEM})*\s*(?:†[^\]】\n]{{0,40}})?[\]】]", regex.IGNORECASE)
_NUMBER = regex.compile(r"(\d{1,3})(?:\s*[-–]\s*(\d{1,3}))?")
_OPENERS = "[【"
_CLOSERS = {"[": "]", "【": "】"}
_BACKTICKS_OR_LINE_END = regex.compile(r"`+|\n")
FENCE = 3  # backticks that open or close a fenced code block at the start of a line
MAX_RANGE = 50


@dataclass(frozen=True)
class Marker:
    """One marker as the model wrote it, and what became of it."""

    text: str
    cited: tuple[int, ...]  # the numbers that name a passage, in order, each once
    invalid: tuple[int, ...]  # the numbers that name none (removed from the text shown)
    shown: str  # what the text shows in its place: "[n, m]", or "" when no number was valid


@dataclass
class _Reading:
    """Where the text read so far stands: in code or a URL, at a line's start. Updated one consumed piece at a time,
    so the state always describes the text up to what is held back."""

    code: int = 0  # 0: not code; -1: a fenced block; n: an inline span opened by a run of n backticks
    line_start: bool = True  # only spaces since the last line break
    url: bool = False  # the current run of non-space characters holds "://"
    tail: str = ""  # the last two characters of that run

    def backticks(self, run: int) -> None:
        if self.line_start and run >= FENCE and self.code <= 0:
            self.code = 0 if self.code else -1
        elif self.code == 0:
            self.code = run
        elif self.code == run:
            self.code = 0
        self.line_start = False
        self.tail = "``"

    def char(self, ch: str) -> None:
        if ch == "\n":
            self.code = -1 if self.code == -1 else 0  # an inline span ends with its line
            self.line_start, self.url, self.tail = True, False, ""
        elif ch.isspace():
            self.url, self.tail = False, ""
        else:
            self.line_start = False
            self.url = self.url or (self.tail + ch).endswith("://")
            self.tail = (self.tail + ch)[-2:]


@dataclass
class CitationStream:
    """Feed streamed text; get back the text that is safe to show and the markers completed by it."""

    valid: Collection[int]
    cited: list[int] = field(default_factory=list)  # distinct valid numbers, in first-cited order
    invalid: int = 0  # numbers removed because they named no passage
    text: str = ""  # everything shown so far
    _pending: str = ""
    _reading: _Reading = field(default_factory=_Reading)

    def feed(self, delta: str) -> tuple[str, list[Marker]]:
        self._pending += delta
        return self._scan(final=False)

    def finish(self) -> tuple[str, list[Marker]]:
        """The end of the text: whatever was held back is shown; a marker left open ("[1") is read as closed, or
        dropped when even closed it is no marker."""
        return self._scan(final=True)

    def cite_from(self, text: str) -> None:
        """Count the valid markers of a text shown elsewhere (a point's title, read with the skeleton) as cited
        here, first. Its invalid markers were removed and counted where it was read."""
        other = CitationStream(self.valid)
        other.feed(text)
        other.finish()
        self.cited.extend(n for n in other.cited if n not in self.cited)

    def _scan(self, *, final: bool) -> tuple[str, list[Marker]]:
        text, out, markers, i = self._pending, [], [], 0
        state = self._reading
        hold_from = len(text)
        while i < len(text):
            ch = text[i]
            if ch == "`":
                end = i
                while end < len(text) and text[end] == "`":
                    end += 1
                if end == len(text) and not final:  # the run may go on in the next delta
                    hold_from = i
                    break
                state.backticks(end - i)
                out.append(text[i:end])
                i = end
                continue
            if state.code > 0 and ch in _OPENERS and MARKER.match(text, i, partial=True):
                closes = _span_closes(text, i, state.code, final=final)  # a marker in an inline span: is it code?
                if closes is None and not final:
                    hold_from = i
                    break
                if not closes:  # the line ends first: its backtick opened nothing
                    state.code = 0
            if state.code or state.url or ch not in _OPENERS:
                state.char(ch)
                out.append(ch)
                i += 1
                continue
            m = MARKER.match(text, i, partial=True)
            if m is not None and m.partial and m.end() == len(text):  # may still become a marker
                if not final:  # hold it back
                    hold_from = i
                    break
                closed = _closed(text[i:])  # the text ends inside it: read it as closed
                if closed is None:  # no number in it: dropped, never shown half-written
                    self._drop_spaces(out)
                    i = len(text)
                    continue
                marker_text, i = closed, len(text)
            elif m is None or m.partial:
                state.char(ch)
                out.append(ch)
                i += 1
                continue
            else:
                marker_text, i = m.group(), m.end()
            marker = self._resolve(marker_text)
            markers.append(marker)
            if not marker.shown:  # removed: so is the space before it ("text [9]." -> "text.")
                self._drop_spaces(out)
            out.append(marker.shown)
            state.char("]")
        shown = "".join(out)
        if not final:
            # trailing spaces wait for what follows: a removed marker right after them takes them with it
            kept = shown.rstrip(" \t")
            hold_from -= len(shown) - len(kept)
            shown = kept
        self._pending = text[hold_from:]
        self.text += shown
        return shown, markers

    @staticmethod
    def _drop_spaces(out: list[str]) -> None:
        while out and out[-1] in " \t":
            out.pop()

    def _resolve(self, text: str) -> Marker:
        numbers: list[int] = []
        for m in _NUMBER.finditer(text):
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            span = range(a, b + 1) if 0 <= b - a <= MAX_RANGE else (a, b)
            numbers.extend(n for n in span if n not in numbers)
        cited = tuple(n for n in numbers if n in self.valid)
        invalid = tuple(n for n in numbers if n not in self.valid)
        self.invalid += len(invalid)
        self.cited.extend(n for n in cited if n not in self.cited)
        shown = f"[{', '.join(map(str, cited))}]" if cited else ""
        return Marker(text=text, cited=cited, invalid=invalid, shown=shown)


def _closed(partial: str) -> str | None:
    """A marker the text ended inside ("[1, 2", "[1-"), closed after its last whole item; None when it holds none."""
    for end in range(len(partial), 1, -1):
        if MARKER.fullmatch(closed := partial[:end].rstrip() + _CLOSERS[partial[0]]):
            return closed
    return None


def _span_closes(text: str, start: int, run: int, *, final: bool) -> bool | None:
    """Whether the inline code span open at ``start`` closes (a run of ``run`` backticks) before its line ends;
    None when the text so far does not say."""
    for m in _BACKTICKS_OR_LINE_END.finditer(text, start):
        if m.group() == "\n":
            return False
        if len(m.group()) == run and (final or m.end() < len(text)):  # a run at the end may still grow
            return True
    return None


def read_citations(text: str, valid: Collection[int]) -> tuple[str, list[Marker]]:
    """A whole text at once: the text to show and its markers."""
    stream = CitationStream(valid)
    shown, markers = stream.feed(text)
    rest, more = stream.finish()
    return shown + rest, markers + more
