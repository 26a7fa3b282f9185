"""The load-aware routing policy, with simulated engine load snapshots (no model, no engine)."""

from __future__ import annotations

import pytest

from sotrag.app.engines.base import EngineLoad
from sotrag.app.routing.load_policy import LoadPolicy
from sotrag.app.routing.router import SoTRouter


class FixedClassifier:
    """A classifier that always gives the same probability: isolates the policy under test."""

    name = "router"
    threshold = 0.5

    def __init__(self, p: float) -> None:
        self.p = p

    def probability(self, question: str) -> float:
        return self.p


def load(running: int, waiting: int = 0, max_num_seqs: int = 256, kv: float = 0.1) -> EngineLoad:
    return EngineLoad(running=running, waiting=waiting, max_num_seqs=max_num_seqs, kv_cache_usage=kv)


def test_idle_engine_list_question_takes_sot_with_point_cap() -> None:
    d = SoTRouter(FixedClassifier(0.91)).route("q", load(3))
    assert d.mode == "sot"
    assert d.reason == "router: list-like, p=0.91; load: 3/256 running"
    assert d.probability == pytest.approx(0.91)
    assert d.max_points == 253  # free batch room


def test_not_list_like_goes_normal_whatever_the_load() -> None:
    d = SoTRouter(FixedClassifier(0.2)).route("q", load(0))
    assert d.mode == "normal" and d.reason.startswith("router: not list-like, p=0.20")
    assert d.max_points is None


def test_saturated_batch_falls_back_to_normal() -> None:
    d = SoTRouter(FixedClassifier(0.9), LoadPolicy(max_busy_fraction=0.75)).route("q", load(150, 50))
    assert d.mode == "normal"
    assert "saturated" in d.reason and "150/256 running, 50 waiting" in d.reason


def test_full_kv_cache_falls_back_to_normal() -> None:
    d = SoTRouter(FixedClassifier(0.9), LoadPolicy(max_kv_cache_usage=0.9)).route("q", load(4, kv=0.95))
    assert d.mode == "normal" and "kv 95%" in d.reason


def test_point_cap_follows_free_batch_room() -> None:
    policy = LoadPolicy(max_busy_fraction=1.0, min_free_seqs=2)
    d = SoTRouter(FixedClassifier(0.9), policy).route("q", load(27, 0, max_num_seqs=32))
    assert d.mode == "sot" and d.max_points == 5
    d = SoTRouter(FixedClassifier(0.9), policy).route("q", load(31, 0, max_num_seqs=32))
    assert d.mode == "normal" and "1 free slots" in d.reason


def test_unknown_load_routes_by_question_only() -> None:
    d = SoTRouter(FixedClassifier(0.9)).route("q", None)
    assert d.mode == "sot" and d.max_points is None and "load: unknown" in d.reason


@pytest.mark.parametrize(
    "kwargs", [{"max_busy_fraction": 0.0}, {"max_kv_cache_usage": 1.5}, {"min_free_seqs": 0}]
)
def test_policy_rejects_nonsense_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoadPolicy(**kwargs)  # type: ignore[arg-type]


def test_router_is_configured_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from sotrag.app.config import Settings
    from sotrag.app.routing.factory import router_from_config

    monkeypatch.setenv("SOTRAG_ROUTER__THRESHOLD", "0.8")
    monkeypatch.setenv("SOTRAG_ROUTER__MAX_BUSY_FRACTION", "0.5")
    router = router_from_config(Settings().router)
    assert router.classifier.threshold == 0.8 and router.policy.max_busy_fraction == 0.5
    with pytest.raises(ValueError, match="needs the engine"):
        router_from_config(Settings(router={"kind": "llm"}).router)  # type: ignore[arg-type]
