"""Citation markers read back from streamed model text, checked against the passages the model was given.

The model is asked to cite passages as ``[n]``; models also write ``[n, m]``, ``[n-m]``, ``[n][m]``,
``[Source n]``, ``[^n]``, ``【n】`` and ``【n†source】``. ``CitationStream`` reads them as text streams in:
it never shows half a marker (a possible marker split across deltas is held back until it closes or can no
longer be one), keeps markers whose passages exist (rewritten as ``[n, m]``), and removes the numbers that
name no passage, counting them, so an invalid citation never reaches a user.

Rules kept simple on purpose: text inside backticks (inline code or a fenced block: an odd count of backticks
so far) is never read as a marker; ``(n)`` is never a marker (prose lists use it); numbers have 1-3 digits
(``[2023]`` is text); a range spans at most 50 numbers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import regex

_KEYWORD = r"(?:sources?|passages?|docs?|documents?|refs?|references?|citations?)\s*:?\s*"
_ITEM = rf"(?:{_KEYWORD})?\d{{1,3}}(?:\s*[-–]\s*\d{{1,3}})?"
_SEP = r"\s*(?:,|;|&|and)\s*"
MARKER = regex.compile(rf"[\[【]\^?\s*{_ITEM}(?:{_SEP}{_ITEM})*\s*(?:†[^\]】\n]{{0,40}})?[\]】]", regex.IGNORECASE)
_NUMBER = regex.compile(r"(\d{1,3})(?:\s*[-–]\s*(\d{1,3}))?")
_OPENERS = "[【"
MAX_RANGE = 50


@dataclass(frozen=True)
class Marker:
    """One marker as the model wrote it, and what became of it."""

    text: str
    cited: tuple[int, ...]  # the numbers that name a passage, in order, each once
    invalid: tuple[int, ...]  # the numbers that name none (removed from the text shown)
    shown: str  # what the text shows in its place: "[n, m]", or "" when no number was valid


@dataclass
class CitationStream:
    """Feed streamed text; get back the text that is safe to show and the markers completed by it."""

    valid: Collection[int]
    cited: list[int] = field(default_factory=list)  # distinct valid numbers, in first-cited order
    invalid: int = 0  # numbers removed because they named no passage
    _pending: str = ""
    _in_code: bool = False  # inside backticks, as of the end of the text shown so far

    def feed(self, delta: str) -> tuple[str, list[Marker]]:
        self._pending += delta
        return self._scan(final=False)

    def finish(self) -> tuple[str, list[Marker]]:
        """The end of the text: whatever was held back is shown (an unclosed "[1" is plain text)."""
        return self._scan(final=True)

    def _scan(self, *, final: bool) -> tuple[str, list[Marker]]:
        text, out, markers, i = self._pending, [], [], 0
        in_code = self._in_code
        hold_from = len(text)
        while i < len(text):
            ch = text[i]
            if ch == "`":
                in_code = not in_code
            if in_code or ch not in _OPENERS:
                out.append(ch)
                i += 1
                continue
            m = MARKER.match(text, i, partial=not final)
            if m is not None and m.partial:  # may still become a marker: hold it back
                hold_from = i
                break
            if m is None:
                out.append(ch)
                i += 1
                continue
            marker = self._resolve(m.group())
            markers.append(marker)
            if not marker.shown:  # removed: so is the space before it ("text [9]." -> "text.")
                while out and out[-1] in " \t":
                    out.pop()
            out.append(marker.shown)
            i = m.end()
        shown = "".join(out)
        if not final:
            # trailing spaces wait for what follows: a removed marker right after them takes them with it
            kept = shown.rstrip(" \t")
            hold_from -= len(shown) - len(kept)
            shown = kept
        self._pending = text[hold_from:]
        self._in_code = in_code
        return shown, markers

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


def read_citations(text: str, valid: Collection[int]) -> tuple[str, list[Marker]]:
    """A whole text at once: the text to show and its markers."""
    stream = CitationStream(valid)
    shown, markers = stream.feed(text)
    rest, more = stream.finish()
    return shown + rest, markers + more
