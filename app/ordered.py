"""Skeleton-of-Thought text in reading order, for consumers that want one stream of text (LangChain
streaming, OpenAI-compatible chunks) rather than parallel point events.

The promise: the text streamed, joined, is exactly the answer's final text (``AnswerResult.answer``), and is
only ever appended to. The rule both sides follow (``result.assemble`` builds the same text):
- SoT: one line per point, ``f"{index}. {title}{text}"`` with its trailing whitespace removed, the lines joined
  by one "\\n". While a point streams, its trailing whitespace is held back until more text follows.
- Normal decoding (and a fallback): the answer's text with leading and trailing whitespace removed; trailing
  whitespace is held back until more text follows.
- Nothing of a point is shown before ``skeleton_done``: until then a point may still be withdrawn (a skeleton
  retry, a fallback, the reader taking eager points back), and text once sent cannot be taken back.
"""

from __future__ import annotations

from sotrag.app.events import AnswerDelta, AnswerDone, Event, SkeletonDone
from sotrag.app.fold import AnswerSoFar


class OrderedText:
    """Turn SoT's interleaved point events into text in skeleton order.

    Points decode in parallel, but a reader (or an OpenAI-style client) wants one text in order: the lowest
    unfinished point streams through; later points buffer until everything before them is done. The state is the
    shared fold (``AnswerSoFar``); this class only remembers how much of each point it has handed out.
    """

    def __init__(self) -> None:
        self.answer = AnswerSoFar()
        self.reset()

    def reset(self) -> None:
        self.final = False  # skeleton_done came: the points are the answer's now, none is withdrawn any more
        self.current = 1  # the point now streaming through
        self.sent: dict[int, int] = {}  # characters of each point's line handed out
        self.normal_sent = 0  # characters of the normal answer's stripped text handed out

    def feed(self, event: Event) -> str:
        """Return the text this event makes ready to show (possibly empty)."""
        if self.answer.feed(event):
            self.reset()  # the SoT attempt is discarded; normal text or a new skeleton follows
            return ""
        if isinstance(event, SkeletonDone):
            self.final = True
        if isinstance(event, AnswerDelta):
            out = self._normal()
        elif isinstance(event, AnswerDone):
            out = self._normal() if self.answer.normal else self._flush(final=True)
        else:
            out = self._flush() if self.final else ""
        return out

    def _normal(self) -> str:
        shown = self.answer.normal.strip()
        out = shown[self.normal_sent :]
        self.normal_sent = len(shown)
        return out

    def _flush(self, final: bool = False) -> str:
        out = []
        titles, texts = self.answer.titles, self.answer.texts
        while self.current in titles:
            i = self.current
            line = (f"{i}. {titles[i]}" + texts.get(i, "")).rstrip()
            out.append(("\n" if i > 1 and i not in self.sent else "") + line[self.sent.get(i, 0) :])
            self.sent[i] = len(line)
            if i in self.answer.done or final:
                self.current += 1
            else:
                break
        return "".join(out)
