"""The router interface: ``mode="auto"`` asks a router whether a question should use SoT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from sotrag.app.engines.base import EngineLoad


@dataclass(frozen=True)
class RouteDecision:
    mode: Literal["sot", "normal"]
    reason: str  # shown to users, e.g. "router: list-like, p=0.91; load: 3/256 running"
    probability: float | None = None  # the router's P(suits SoT), when it has one
    max_points: int | None = None  # a cap on points from free batch room, when load-aware
    cause: Literal["question", "load", "fits", "default"] = "default"  # what decided: for metrics labels


class Router(Protocol):
    """Decides ``mode="auto"``. ``route`` is required; the rest have no-op defaults for a router that inherits
    this class (``SoTRouter`` overrides them all)."""

    def route(self, question: str, load: EngineLoad | None) -> RouteDecision: ...

    def watch_loop(self) -> None:
        """Start measuring the running event loop's lag (called by the pipeline from inside the loop)."""
        return None

    def warm_up(self) -> None:
        """Load now what the first routed question would otherwise wait for (called before the server is ready)."""
        return None

    def refusing(self) -> bool | None:
        """Whether the load policy refuses SoT now (a metrics gauge); None: the router has no such policy."""
        return None

    def loop_lag_s(self) -> float | None:
        """The event loop's recent lag (a metrics gauge); None when not measured."""
        return None


class QuestionClassifier(Protocol):
    """Anything that says how likely a question's answer is a list of independent points. ``warm_up`` has a
    no-op default for a classifier that inherits this class."""

    name: str
    threshold: float

    def probability(self, question: str) -> float: ...

    def warm_up(self) -> None:
        """Load the model now rather than on the first question."""
        return None

