"""``SoTRouter``: the ``Router`` of ``mode="auto"``, question type first, then engine load.

It gives a reason string such as ``"router: list-like, p=0.91; load: 3/256 running"``.
"""

from __future__ import annotations

from sotrag.app.engines.base import EngineLoad
from sotrag.app.routing.base import QuestionClassifier, RouteDecision, Router
from sotrag.app.routing.load_policy import LoadPolicy
from sotrag.app.routing.loop_lag import LoopLag


class SoTRouter(Router):
    """The ``Router`` for ``mode="auto"``: question type first, then engine load.

    ``loop_lag``: the event-loop lag monitor the policy also reads (``make_router`` passes the process's
    ``LOOP_LAG``); None: the engine's stats alone decide."""

    def __init__(
        self, classifier: QuestionClassifier, policy: LoadPolicy | None = None, loop_lag: LoopLag | None = None
    ) -> None:
        self.classifier = classifier
        self.policy = policy or LoadPolicy()
        self.loop_lag = loop_lag

    def watch_loop(self) -> None:
        """Measure the running event loop's lag (called by the pipeline from inside the loop)."""
        if self.loop_lag is not None:
            self.loop_lag.watch()

    def warm_up(self) -> None:
        """Load the classifier's model now (the trained router's first build takes seconds of CPU)."""
        self.classifier.warm_up()

    def refusing(self) -> bool:
        return self.policy.refusing

    def loop_lag_s(self) -> float | None:
        return self.loop_lag.lag_s() if self.loop_lag is not None else None

    def route(self, question: str, load: EngineLoad | None) -> RouteDecision:
        p = self.classifier.probability(question)
        return self.decide(p, load)

    def decide(self, p: float, load: EngineLoad | None) -> RouteDecision:
        name = self.classifier.name
        suits = p >= self.classifier.threshold
        kind = "list-like" if suits else "not list-like"
        verdict = self.policy.check(load, self.loop_lag_s())
        reason = f"{name}: {kind}, p={p:.2f}; {verdict.text}"
        if not suits:
            return RouteDecision("normal", reason, probability=p, cause="question")
        if not verdict.ok:
            return RouteDecision("normal", reason + " -> normal", probability=p, cause="load")
        return RouteDecision("sot", reason, probability=p, max_points=verdict.max_points, cause="fits")

