"""Where a point's text ends: at a blank line, or where the model starts another point (its number in any
marker style the skeleton reader accepts, or its title), never before the point has text.

Why not vLLM stop strings alone: they are literal and apply from the first token, so "\\n\\n" ends a point that
starts with a blank line before it has any text (an empty point), and listing every numbering style a model
copies ("**2.**", "2)", "### 2.", " 2.", "Step 2:", "\\r\\n\\r\\n") as stop strings is impossible. The point
request keeps cheap literal stops for the common next-point lines (``stops``); this cut, applied to the point's
stream by ``EngineCalls``, ends it at the rest, and its request is aborted there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from sotrag.app.citations import MARKER
from sotrag.app.skeleton_lines import clean_title, parse_heading, parse_item, title_key

_HOLD = 16  # characters of a new line held back while a marker may still be forming in them ("### **Step 2:**")
_MAX_HOLD = 64  # ... at most, when no space comes
_DIGITS = re.compile(r"\d{1,2}")
_ROMAN = re.compile(r"[#*_\s]*([IVX]{1,5})[.)]")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
_ONLY_MARKER = re.compile(r"[\s#*_>\-\d.):(\[\]]*")  # what may stand before a restated title ("### **2. ")
_SEPARATOR = re.compile(r"[*_]*\s*(?:[:|\uff1a]|[-\u2013\u2014]\s)")  # after a title: its description follows
_CLOSE = re.compile(r"^(?:\*\*|__|\*|_)")  # the emphasis that closes a restated title ("**2. Title**: text")


def stops(index: int, max_number: int) -> tuple[str, ...]:
    """The literal stop strings of point ``index``: another point's number starting a line, as a skeleton writes
    it ("\\n3. ", the next point's first, also in bold). Never the point's own number (a point that restates its
    title on a new line would end before its text) and no blank line: ``PointEnd`` cuts those once there is
    text."""
    others = [j for j in range(1, max_number + 1) if j != index]
    after = index + 1
    return (f"\n{after}. ", f"\n**{after}.", *(f"\n{j}. " for j in others if j != after))


class PointEnd:
    """Fed the point's streamed text; gives back the text that belongs to the point, and whether it ended.

    The first line continues the point's open title and always belongs to it. A new line is held back (with the
    line break before it) until it is clear whether it starts another point: a blank line after the point has
    text, a numbered line (1 to ``max_number``; the point's own number only once it has text), or a line that
    opens with another point's title ("Speak early: ...", "**Speak early**"). The cut drops the line break too."""

    def __init__(self, index: int, max_number: int, title: str, titles: Sequence[str]) -> None:
        self.index = index
        self.max_number = max_number
        self.own = _key(title)
        others = {k: t for t in titles if (k := _key(t)) and k != self.own}
        self.titles = set(others)  # the other points' titles
        self._others = [p for t in others.values() if (p := _title_pattern(t)) is not None]
        self._restated = _title_pattern(title)
        self.ended = False
        self._held = ""  # from a line break whose line is not decided yet
        self._line_open = True  # the current line was decided: it belongs to the point up to its end
        self._has_text = False
        self._lead = ""  # white space before the point's first text: held with it (a restated title drops it)

    def feed(self, delta: str) -> tuple[str, bool]:
        return self._read(delta, final=False)

    def finish(self) -> str:
        """The end of the stream: what was held back, unless it starts another point or is a blank line."""
        return self._read("", final=True)[0]

    def _read(self, delta: str, *, final: bool) -> tuple[str, bool]:
        if self.ended:
            return "", True
        buf, out = self._held + delta, []
        while buf:
            if self._line_open:
                end = _break(buf)
                if end < 0:  # the line goes on (a "\r" at the end may begin its break)
                    end = len(buf) - (buf.endswith("\r") and not final)
                piece, buf = buf[:end], buf[end:]
                out.append(piece)
                self._has_text = self._has_text or bool(piece.strip())
                if not buf or buf == "\r":
                    break
                self._line_open = False
                continue
            start = buf.index("\n") + 1  # buf starts at a line break: "\n" or "\r\n"
            end = _break(buf, start)
            line = buf[start:] if end < 0 else buf[start:end]
            verdict = self._verdict(line.strip(), complete=end >= 0 or final)
            if verdict is None:  # not decided yet: hold the break and the line
                break
            if verdict:
                self.ended = True
                buf = ""
                break
            self._line_open = True
            if not self._has_text and (rest := self._after_restated(line)) is not None:
                out, self._lead = [], ""
                buf = rest + buf[start + len(line) :]  # "\n2. Title: text" -> ": text"
                continue
            out.append(buf[:start])
            buf = buf[start:]
        self._held = "" if final else buf
        text = "".join(out)
        if not self._has_text:
            self._lead, text = self._lead + text, ""
        elif self._lead:
            self._lead, text = "", self._lead + text
        return text, self.ended

    def _verdict(self, line: str, *, complete: bool) -> bool | None:
        """True: the point ends before this line; False: the line belongs to it; None: not known yet."""
        if not line:  # a blank line ends a point that has text; one before its text belongs to it
            return self._has_text if complete else None
        if self._starts_other_point(line, complete=complete):
            return True
        if complete:
            return False
        if len(_settled(line)) < _HOLD and len(line) < _MAX_HOLD:  # a marker may still be forming
            return None
        key = _key(_title_of(line))
        if any(title.startswith(key) for title in self.titles):
            return None
        if not self._has_text and self.own.startswith(key):  # may restate the point's own title: wait past it
            m = self._restated.search(line) if self._restated is not None else None
            return None if m is None or not line[m.end() :].strip("*_ ") else False
        return False

    def _after_restated(self, line: str) -> str | None:
        """Before the point has text, a line that restates its own number and title: what follows the title."""
        m = self._restated.search(line) if self._restated is not None else None
        if m is None or not _ONLY_MARKER.fullmatch(line[: m.start()]):
            return None
        return _CLOSE.sub("", line[m.end() :], count=1)

    def _starts_other_point(self, line: str, *, complete: bool) -> bool:
        settled = line if complete else _settled(line)
        item = parse_item(settled) if settled.strip() else None
        if item is not None and item[0] == "num":
            number = _number(settled)
            # its own number too once it has text (before, the line restates its title: ``_after_restated``)
            if number is not None and (number != self.index or self._has_text) and 1 <= number <= self.max_number:
                return True
        # another point's title after nothing but a marker, then a separator (": ", " - ") or the line's end
        for pattern in self._others:
            m = pattern.search(line)
            if m is not None and _ONLY_MARKER.fullmatch(line[: m.start()]):
                after = line[m.end() :]
                if _SEPARATOR.match(after) or (complete and not after.strip("*_ ")):
                    return True
        return False


def _title_pattern(title: str) -> re.Pattern[str] | None:
    """A title as written in a line: its words in order, case and the marks between them aside."""
    words = MARKER.sub("", title).split()
    return re.compile(r"\W*".join(map(re.escape, words)), re.IGNORECASE) if words else None


def _settled(line: str) -> str:
    """A line not complete yet, read up to its last space: "2." may still become "2.5", "2. " may not."""
    return line[: max(line.rfind(" "), line.rfind("\t")) + 1]


def _break(text: str, start: int = 0) -> int:
    """Where the next line break starts ("\\r\\n" or "\\n"), or -1."""
    end = text.find("\n", start)
    return end - 1 if end > start and text[end - 1] == "\r" else end


def _key(title: str) -> str:
    """A title as compared: without citation markers, case and spacing aside."""
    return title_key(MARKER.sub("", title))


def _title_of(line: str) -> str:
    """The title a line would give: a list item's, a heading's or bold label's, else the text before a
    separator ("Speak early: Talk" gives "Speak early")."""
    item = parse_item(line)
    if item is not None and item[1]:
        return item[1]
    heading = parse_heading(line)
    return heading[1] if heading is not None else clean_title(line)


def _number(line: str) -> int | None:
    """The number of a numbered line: its first digits ("**2.**", "Step 2:", "1️⃣"), a circled or other digit
    character ("②"), or a Roman number ("II.")."""
    if m := _DIGITS.search(line):
        return int(m.group())
    for ch in line[:4]:
        if (value := unicodedata.digit(ch, None)) is not None:
            return value
    if m := _ROMAN.match(line):
        values = [_ROMAN_VALUES[c] for c in m.group(1)]
        return sum(-v if v < w else v for v, w in zip(values, [*values[1:], 0], strict=True))
    return None
