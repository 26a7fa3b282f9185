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
    def route(self, question: str, load: EngineLoad | None) -> RouteDecision: ...


class QuestionClassifier(Protocol):
    """Anything that says how likely a question's answer is a list of independent points."""

    name: str
    threshold: float

    def probability(self, question: str) -> float: ...

