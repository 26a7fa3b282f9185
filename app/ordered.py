"""Skeleton-of-Thought text in reading order, for consumers that want one stream of text (LangChain
streaming, OpenAI-compatible chunks) rather than parallel point events."""

from __future__ import annotations

from sotrag.app.events import AnswerDelta, AnswerDone, Event
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
        self.current = 1  # the point now streaming through
        self.sent: dict[int, int] = {}  # characters of each point's text handed out; a key once its title went

    def feed(self, event: Event) -> str:
        """Return the text this event makes ready to show (possibly empty)."""
        if self.answer.feed(event):
            self.reset()  # the SoT attempt is discarded; normal text or a new skeleton follows
            return ""
        if isinstance(event, AnswerDelta):
            return event.text
        return self._flush(final=isinstance(event, AnswerDone))

    def _flush(self, final: bool = False) -> str:
        out = []
        titles, texts = self.answer.titles, self.answer.texts
        while self.current in titles:
            i = self.current
            if i not in self.sent:
                out.append(("\n" if i > 1 else "") + f"{i}. {titles[i]}")
                self.sent[i] = 0
            text = texts.get(i, "")
            out.append(text[self.sent[i] :])
            self.sent[i] = len(text)
            if i in self.answer.done or final:
                self.current += 1
            else:
                break
        return "".join(out)
