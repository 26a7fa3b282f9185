"""Skeleton-of-Thought text in reading order, for consumers that want one stream of text (LangChain
streaming, OpenAI-compatible chunks) rather than parallel point events."""

from __future__ import annotations

from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    Event,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    SkeletonRetry,
)


class OrderedText:
    """Turn SoT's interleaved point events into text in skeleton order.

    Points decode in parallel, but a reader (or an OpenAI-style client) wants one text in order: the lowest
    unfinished point streams through; later points buffer until everything before them is done.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.titles: dict[int, str] = {}
        self.buffers: dict[int, str] = {}
        self.done: set[int] = set()
        self.current = 1  # the point now streaming through
        self.emitted_title: set[int] = set()

    def feed(self, event: Event) -> str:
        """Return the text this event makes ready to show (possibly empty)."""
        if isinstance(event, AnswerDelta):
            return event.text
        if isinstance(event, (FallbackEvent, SkeletonRetry)):
            self.reset()  # the SoT attempt is discarded; normal text or a new skeleton follows
            return ""
        if isinstance(event, PointStarted):
            self.titles[event.index] = event.title
            self.buffers.setdefault(event.index, "")
        elif isinstance(event, PointDelta):
            self.buffers[event.index] = self.buffers.get(event.index, "") + event.text
        elif isinstance(event, PointDone):
            self.done.add(event.index)
        elif isinstance(event, AnswerDone):
            return self._flush(final=True)
        return self._flush()

    def _flush(self, final: bool = False) -> str:
        out = []
        while self.current in self.titles:
            i = self.current
            if i not in self.emitted_title:
                out.append(("\n" if i > 1 else "") + f"{i}. {self.titles[i]}")
                self.emitted_title.add(i)
            out.append(self.buffers[i])
            self.buffers[i] = ""
            if i in self.done or final:
                self.current += 1
            else:
                break
        return "".join(out)
