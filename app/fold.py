"""One fold of an answer's event stream: what the answer looks like so far.

The web UI, the terminal view and the in-order text stream (LangChain, OpenAI chunks) all read the same events;
they build their state here, so they agree on what a skeleton retry or a fallback discards:
- ``skeleton_retry``: the discarded skeleton and every point started from it (eager points) go; a new skeleton
  follows;
- ``fallback``: every point goes (normal decoding answers instead); the skeleton's text stays, as the record of
  what was tried;
- ``point_withdrawn``: that one point goes (a point started with its index later starts empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    PointWithdrawn,
    RouteEvent,
    SkeletonDelta,
    SkeletonDone,
    SkeletonRetry,
    Source,
    SourcesEvent,
)


@dataclass
class AnswerSoFar:
    """The answer as its events have built it up to now."""

    sources: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # route, retry and fallback reasons, in order
    skeleton: str = ""
    skeleton_titles: list[str] = field(default_factory=list)  # the finished skeleton's points
    titles: dict[int, str] = field(default_factory=dict)  # started points
    texts: dict[int, str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    citations: dict[int, list[Source]] = field(default_factory=dict)  # a finished point's cited passages
    normal: str = ""
    result: AnswerResult | None = None

    def feed(self, event: Event) -> bool:
        """Apply one event; True when it discarded the points so far (a skeleton retry or a fallback)."""
        if isinstance(event, SourcesEvent):
            self.sources = list(event.sources)
        elif isinstance(event, RouteEvent):
            self.notes.append(f"auto chose {event.mode}: {event.reason}")
        elif isinstance(event, SkeletonDelta):
            self.skeleton += event.text
        elif isinstance(event, SkeletonDone):
            self.skeleton_titles = list(event.points)
        elif isinstance(event, SkeletonRetry):
            self.notes.append(event.reason)
            self.skeleton = ""
            self._drop_points()
            return True
        elif isinstance(event, FallbackEvent):
            self.notes.append(f"fell back to normal decoding: {event.reason}")
            self._drop_points()
            return True
        elif isinstance(event, PointStarted):
            self.titles[event.index] = event.title
            self.texts[event.index] = ""
            self.done.discard(event.index)
        elif isinstance(event, PointWithdrawn):
            self._drop_point(event.index)
        elif isinstance(event, PointDelta):
            self.texts[event.index] = self.texts.get(event.index, "") + event.text
        elif isinstance(event, PointDone):
            self.done.add(event.index)
            self.citations[event.index] = list(event.citations)
        elif isinstance(event, AnswerDelta):
            self.normal += event.text
        elif isinstance(event, AnswerDone):
            self.result = event.result
        return False

    def _drop_point(self, index: int) -> None:
        self.titles.pop(index, None)
        self.texts.pop(index, None)
        self.done.discard(index)
        self.citations.pop(index, None)

    def _drop_points(self) -> None:
        self.skeleton_titles.clear()
        self.titles.clear()
        self.texts.clear()
        self.done.clear()
        self.citations.clear()
