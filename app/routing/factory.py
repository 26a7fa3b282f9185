"""Build the router for auto mode from its name or from ``Settings.router``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sotrag.app.routing.base import QuestionClassifier
from sotrag.app.routing.classifier import TrainedRouter
from sotrag.app.routing.llm_router import LLMRouter
from sotrag.app.routing.load_policy import LoadPolicy
from sotrag.app.routing.loop_lag import LOOP_LAG
from sotrag.app.routing.router import SoTRouter

if TYPE_CHECKING:
    from sotrag.app.config import RouterConfig
    from sotrag.app.engines.base import Engine

def make_router(
    kind: Literal["trained", "llm"] = "trained",
    *,
    engine: Engine | None = None,
    threshold: float | None = None,
    artifact: str | Path | None = None,
    policy: LoadPolicy | None = None,
) -> SoTRouter:
    """The router for auto mode: ``"trained"`` (default, fast, local) or ``"llm"`` (asks the engine)."""
    classifier: QuestionClassifier
    if kind == "trained":
        classifier = TrainedRouter(artifact=artifact, threshold=threshold)
    elif kind == "llm":
        if engine is None:
            raise ValueError('router="llm" needs the engine')
        classifier = LLMRouter(engine)
    else:
        raise ValueError(f"unknown router kind {kind!r} (trained or llm)")
    return SoTRouter(classifier, policy, loop_lag=LOOP_LAG)


def policy_from_config(config: RouterConfig) -> LoadPolicy:
    """The load policy ``Settings.router`` describes (``SOTRAG_ROUTER__MAX_ITL_RATIO``, ...)."""
    return LoadPolicy(
        max_busy_fraction=config.max_busy_fraction,
        max_kv_cache_usage=config.max_kv_cache_usage,
        min_free_seqs=config.min_free_seqs,
        max_waiting=config.max_waiting,
        max_itl_ratio=config.max_itl_ratio,
        resume_itl_ratio=config.resume_itl_ratio,
        max_loop_lag_s=config.max_loop_lag_ms / 1e3,
        resume_loop_lag_s=config.resume_loop_lag_ms / 1e3,
    )


def router_from_config(config: RouterConfig, engine: Engine | None = None) -> SoTRouter:
    """The router ``Settings.router`` describes (``SOTRAG_ROUTER__KIND``, ``SOTRAG_ROUTER__THRESHOLD``, ...)."""
    policy = policy_from_config(config)
    return make_router(config.kind, engine=engine, threshold=config.threshold, artifact=config.artifact, policy=policy)
