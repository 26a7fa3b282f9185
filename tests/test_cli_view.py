"""``sotrag ask``'s live view in a terminal shorter and narrower than the answer (issue #11, item 9).

The bytes rich writes are replayed on a small terminal model (a screen of H rows over a scrollback, cursor
moves clamped at the top row, deferred wrap at the last column, erase-line): the same reason a real terminal
duplicates text when a live region grows taller than the screen. What ends up on screen and in scrollback
must hold every point exactly once, in reading order, then the sources. No engine: the events are typed
pipeline events fed in the order a SoT answer produces them (points finishing out of order)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from sotrag.app.cli.ask import AnswerView
from sotrag.app.events import (
    AnswerDelta,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    PointWithdrawn,
    SkeletonDelta,
    SkeletonDone,
    Source,
    SourcesEvent,
)

_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])")


class Terminal:
    """Just enough of a VT100 for what rich's Live emits."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rows = [[" "] * width for _ in range(height)]
        self.scrollback: list[str] = []
        self.row = self.col = 0

    def _newline(self) -> None:
        self.col = 0
        if self.row == self.height - 1:
            self.scrollback.append("".join(self.rows.pop(0)).rstrip())
            self.rows.append([" "] * self.width)
        else:
            self.row += 1

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            m = _CSI.match(data, i)
            if m:
                arg, op = m.group(1), m.group(2)
                n = int(arg) if arg.isdigit() else 1
                if op == "A":
                    self.row = max(0, self.row - n)  # a terminal cannot move above its top row
                elif op == "B":
                    self.row = min(self.height - 1, self.row + n)
                elif op == "K":
                    self.rows[self.row] = [" "] * self.width
                elif op == "G":
                    self.col = max(0, n - 1)
                i = m.end()
                continue
            ch = data[i]
            i += 1
            if ch == "\n":
                self._newline()
            elif ch == "\r":
                self.col = 0
            elif ch == "\x1b" or ch < " ":
                continue
            else:
                if self.col >= self.width:  # deferred wrap
                    self._newline()
                self.rows[self.row][self.col] = ch
                self.col += 1

    def text(self) -> str:
        lines = self.scrollback + ["".join(r).rstrip() for r in self.rows]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


def _run(events: list[object], width: int = 40, height: int = 8) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=width, height=height)
    view = AnswerView(console, auto_refresh=False)
    with view.live():
        for event in events:
            view.update(event)  # type: ignore[arg-type]
    view.finish()
    term = Terminal(width, height)
    term.feed(out.getvalue())
    return " ".join(term.text().split())  # wrapping is the terminal's business: compare the words


WORDS = [
    "the",
    "keeper",
    "trims",
    "the",
    "wick",
    "and",
    "winds",
    "the",
    "clockwork",
    "lamp",
    "before",
    "the",
    "fog",
    "rolls",
    "in",
]


def _point_text(i: int) -> str:
    return " ".join(f"{w}{i}" for w in WORDS)


def test_points_taller_than_the_terminal_appear_once_in_order() -> None:
    events: list[object] = [
        SourcesEvent(sources=[Source(n=1, source="garden/roses.md", heading="Care", score=0.9, snippet="...")])
    ]
    events += [SkeletonDelta(text=f"{i}. Step {i}\n") for i in range(1, 5)]
    events += [SkeletonDone(points=[f"Step {i}" for i in range(1, 5)])]
    events += [PointStarted(index=i, title=f"Step {i}") for i in range(1, 5)]
    for word in WORDS:  # all four grow together, a word at a time
        for i in range(1, 5):
            events.append(PointDelta(index=i, text=f" {word}{i}"))
    # out of order, as parallel points finish
    events += [PointDone(index=i, text=_point_text(i), tokens=len(WORDS)) for i in (3, 1, 4, 2)]
    shown = _run(events)
    for i in range(1, 5):
        assert shown.count(_point_text(i)) == 1, shown
        assert shown.count(f"{i}. Step {i}") == 1, shown
    assert shown.index("1. Step 1") < shown.index("2. Step 2") < shown.index("3. Step 3") < shown.index("4. Step 4")
    assert shown.count("garden/roses.md > Care") == 1 and shown.index("sources") > shown.index("4. Step 4")
    assert shown.count("wick1") == 1  # no half-drawn copy of a point left behind either


def test_normal_answer_taller_than_the_terminal_appears_once() -> None:
    lines = [f"line {n} " + " ".join(f"{w}{n}" for w in WORDS[:6]) for n in range(30)]
    events: list[object] = [SkeletonDelta(text="1. only one\n"), FallbackEvent(reason="too few points")]
    for line in lines:
        for word in line.split(" "):
            events.append(AnswerDelta(text=word + " "))
        events.append(AnswerDelta(text="\n"))
    shown = _run(events, width=30, height=6)
    for n in range(30):
        assert shown.count(f"line {n} ") == 1, shown
    assert shown.index("line 3 ") < shown.index("line 17 ") < shown.index("line 29 ")


def test_an_eager_point_taken_back_is_never_printed() -> None:
    """Eager mode: point 1 starts and even finishes before the skeleton is final, then the reader takes it back
    (it was reasoning before a lone ``</think>``) and a new point 1 starts. Nothing of the withdrawn point may
    stay on screen or in scrollback."""
    events: list[object] = [
        SkeletonDelta(text="1. musing aloud\n"),
        PointStarted(index=1, title="musing aloud"),
        PointDelta(index=1, text=": withdrawnword here."),
        PointDone(index=1, text=": withdrawnword here.", tokens=3),
        PointWithdrawn(index=1, reason="the skeleton reader took it back"),
        SkeletonDelta(text="</think>\n1. Real one\n2. Real two\n"),
        PointStarted(index=1, title="Real one"),
        SkeletonDone(points=["Real one", "Real two"]),
        PointStarted(index=2, title="Real two"),
        PointDone(index=1, text=": kept1.", tokens=2),
        PointDone(index=2, text=": kept2.", tokens=2),
    ]
    events[-2:-2] = [PointDelta(index=1, text=": kept1."), PointDelta(index=2, text=": kept2.")]
    shown = _run(events)
    assert "withdrawnword" not in shown and "musing aloud" not in shown, shown
    assert shown.count("1. Real one: kept1.") == 1 and shown.count("2. Real two: kept2.") == 1, shown
