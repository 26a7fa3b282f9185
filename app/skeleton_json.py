"""A skeleton written as JSON: its list's items, read line by line as they stream.

Asked for a numbered list, some models (or a user's system prompt that asks for JSON) write the skeleton as a
JSON array (``["A", "B"]``), an object holding one (``{"points": [...]}``), an array of objects
(``[{"title": "A"}, ...]``) or an object numbered by its keys (``{"1": "A", "2": "B"}``), bare or in a
```` ```json ```` fence; a Python list (``['A', 'B']``) too. ``SkeletonParser`` hands the lines here once a line
opens such a value, and takes each item as its element completes, so eager expansion starts it as early as a
markdown line's.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field

from sotrag.app.skeleton_lines import body_title, parse_item

# A line that opens a JSON list or object: "[" or "{" alone (or before a comment), "[" before a string, an object
# or an array, "{" before a key ("[1] T" is a numbered line, "{x}" no JSON).
JSON_START = re.compile(r"""(?:\[|\{)\s*(?:$|//|/\*|\#)|\[\s*["'{\[]|\{\s*["']""")
# A line that is one JSON string, a comma after it or not: a line of JSON Lines of bare strings (``"A"`` a line).
STRING_LINE = re.compile(r'"(?:[^"\\\n]|\\.)*"\s*,?')
# Keys of an object element that hold its title, in order of preference.
_TITLE_KEYS = ("title", "point", "heading", "name", "topic", "label", "summary", "text", "content", "description")
# Keys that number an object's values ("1", "point 2", "step_3"): such an object is the list.
_NUMBERED_KEY = re.compile(r"[^\W\d]{0,10}[ _-]?\d{1,2}")
_CLOSE = {"[": "]", "{": "}"}
# Keys of an object whose array is its metadata, not its list ({"tags": [...], "points": [...]}).
_META_KEYS = frozenset(
    {"tags", "keywords", "categories", "sources", "references", "citations", "links", "urls", "authors", "languages"}
)
# The key an array opens under: the object's text since its last "," or "{" ends in '"key":'.
_KEY_BEFORE = re.compile(r"""["']([^"']{1,40})["']\s*:\s*$""")


@dataclass
class JsonList:
    """The state of a JSON value being read: open brackets, an open string, the text of the list's current
    element. The list is the first array in the value (an object's first array value, skipping one under a
    metadata key such as ``tags``), or, if there is none, a top-level object whose keys number its values."""

    done: bool = False  # the value's last bracket has closed
    _stack: list[str] = field(default_factory=list)
    _quote: str = ""  # the quote of the string being read, if any
    _escape: bool = False
    _depth: int | None = None  # the depth of the list's elements, once its "[" came
    _element: list[str] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)  # all of the value (for a numbered object)
    _found: bool = False  # an array was the list
    _member: list[str] = field(default_factory=list)  # a top-level object's text since its last "," or "{"
    _reads: int = 0  # lines read
    _lines: JsonLines | None = None  # JSON Lines, while each line after the value is one more object
    _comment: str = ""  # the comment being skipped: "//" (to the line's end) or "/*"
    _comment_at: int = 0  # where a "/*" opened on its line (its "*" closes nothing)

    @classmethod
    def of_lines(cls) -> JsonList:
        """JSON Lines from their first line on: one object or string a line."""
        return cls(done=True, _lines=JsonLines())

    @property
    def ended(self) -> bool:
        """The list is over: the value's last bracket closed (JSON Lines may go on)."""
        return self.done and self._lines is None

    def read(self, line: str) -> list[str] | None:
        """The titles of the elements that ``line`` (a complete line) completes; None for a line after the value
        (no more of it)."""
        if self.done:
            return self._next_line(line.strip())
        titles: list[str] = []
        text = line + "\n"
        self._reads += 1
        self._comment_at = -2  # (a "/*" opened on an earlier line: any "*/" closes it)
        for i, char in enumerate(text):
            if self.done:
                break
            if self._skip(text, i):
                continue
            self._text.append(char)
            if self._quote:
                if self._escape:
                    self._escape = False
                elif char == "\\":
                    self._escape = True
                elif char == self._quote:
                    self._quote = ""
            elif char in "\"'":
                self._quote = char
            elif char in "[{":
                self._stack.append(_CLOSE[char])
                if self._depth is None and char == "[" and not self._under_meta_key():
                    self._depth, self._found = len(self._stack), True
                    continue
            elif char in "]}" and self._stack:
                if len(self._stack) == self._depth:  # the list closes
                    titles += self._take()
                    self._depth = -1
                elif self._depth is not None and len(self._stack) > self._depth > 0:
                    self._element.append(char)
                self._stack.pop()
                self.done = not self._stack
                continue
            elif char == "," and len(self._stack) == self._depth:
                titles += self._take()
                continue
            if self._depth is not None and len(self._stack) >= self._depth > 0:
                self._element.append(char)
            if self._stack == ["}"]:  # a member of the top-level object: its key comes before its value
                if char in ",{":
                    self._member = []
                else:
                    self._member.append(char)  # (in place: a long member must not cost its length squared)
        if self.done and not self._found:
            titles += _numbered_object("".join(self._text))
            if not titles and self._reads == 1:  # one object on one line: maybe the first of JSON Lines
                self._lines = JsonLines()
                self._next_line("".join(self._text).strip())
        return titles

    def _next_line(self, stripped: str) -> list[str] | None:
        """A line after the value: the next object of JSON Lines, if they go on; else None."""
        titles = self._lines.read(stripped) if self._lines is not None else None
        if titles is None:
            self._lines = None
        return titles

    def _skip(self, text: str, i: int) -> bool:
        """Whether ``text[i]`` is inside a comment (JSONC's ``//`` and ``/* */``, Python's ``#``), outside strings:
        a comment is no part of an element (it would make the element no JSON)."""
        if self._comment == "/*":
            if text[i - 1 : i + 1] == "*/" and i > self._comment_at + 1:
                self._comment = ""
            return True
        if self._comment == "//":
            if text[i] != "\n":
                return True
            self._comment = ""
            return False
        if self._quote or text[i] not in "/#":
            return False
        opened = "#" if text[i] == "#" else text[i : i + 2]
        if opened not in ("#", "//", "/*"):
            return False
        self._comment, self._comment_at = ("/*", i) if opened == "/*" else ("//", i)
        return True

    def _under_meta_key(self) -> bool:
        """Whether the array just opened is a top-level object's metadata (``"tags": [``)."""
        if self._stack != ["}", "]"]:
            return False
        key = _KEY_BEFORE.search("".join(self._member))
        return key is not None and key.group(1).strip().lower() in _META_KEYS

    def _take(self) -> list[str]:
        text, self._element = "".join(self._element).strip(), []
        title = _title(_load(text)) if text else ""
        return [title] if title else []


@dataclass
class JsonLines:
    """JSON Lines: one object a line, each an item (its title as an array's object element's), or one string a line
    (a comma after it or not). The first is held until a second follows: one object (or one quoted line) alone is no
    list."""

    held: str | None = None
    started: bool = False

    def read(self, stripped: str) -> list[str] | None:
        """The items a line gives ([] while the first is held, or for a blank line); None for a line that is no
        titled object."""
        if not stripped:
            return []
        if STRING_LINE.fullmatch(stripped):
            value = _load(stripped.rstrip(", \t"))
        else:
            value = _load(stripped) if stripped.startswith("{") and stripped.endswith("}") else None
        title = _title(value) if isinstance(value, dict | str) else ""
        if not title:
            return None
        if self.started:
            return [title]
        if self.held is None:
            self.held = title
            return []
        self.started = True
        return [self.held, title]


@dataclass
class JsonReader:
    """The skeleton written as JSON, as ``SkeletonParser`` reads it: a line before any item may open a value (a
    list or an object, or JSON Lines of strings: a quoted line, held until a second one follows), and so may a line
    after a value that gave no item (a quoted line alone, one object)."""

    value: JsonList | None = None

    @property
    def ended(self) -> bool:
        return self.value is not None and self.value.ended

    def read(self, line: str, *, first: bool) -> list[str] | None:
        """The titles of the elements ``line`` completes; None for a line that is no part of a JSON value.
        ``first``: no item came before the line."""
        titles = self.value.read(line) if self.value is not None else None
        if titles is None and first:
            stripped = line.strip()
            opened = JSON_START.match(stripped) or STRING_LINE.fullmatch(stripped)
            self.value = None if opened is None else JsonList() if opened.re is JSON_START else JsonList.of_lines()
            titles = self.value.read(line) if self.value is not None else None
        return titles


def _load(text: str) -> object:
    """A JSON value, or a Python literal (single quotes); None if it is neither. Model text can be anything: a
    value nested deeper than the parsers recurse is none, and Python's compiler may not warn about it (a
    ``SyntaxWarning`` for ``1st`` would reach the server's log)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if not text.startswith(("'", '"', "[", "{", "(")):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _title(value: object) -> str:
    """The title of one element: a string, or an object's title (``_TITLE_KEYS``, else its first string)."""
    if isinstance(value, dict):
        named = {str(k).lower(): v for k, v in value.items() if isinstance(v, str)}
        value = next((named[key] for key in _TITLE_KEYS if key in named), next(iter(named.values()), None))
    return _string_title(value) if isinstance(value, str) else ""


def _string_title(text: str) -> str:
    """A string's title, read as a list line ("1. **T**: text" gives "T"), else as an item's text."""
    item = parse_item(text.strip())
    return item[1] if item is not None and item[1] else body_title(text.strip())


def _numbered_object(text: str) -> list[str]:
    """The values of an object numbered by its keys (``{"1": "A", "2": "B"}``), else none."""
    value = _load(text.strip())
    if not isinstance(value, dict) or len(value) < 2:
        return []
    if not all(isinstance(v, str) and _NUMBERED_KEY.fullmatch(str(k).strip()) for k, v in value.items()):
        return []
    return [t for t in map(_string_title, value.values()) if t]
