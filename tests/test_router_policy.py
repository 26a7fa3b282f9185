"""The load-aware routing policy, with simulated engine load snapshots (no model, no engine)."""

from __future__ import annotations

import pytest

from sotrag.app.engines.base import EngineLoad
from sotrag.app.routing.base import QuestionClassifier
from sotrag.app.routing.load_policy import LoadPolicy
from sotrag.app.routing.loop_lag import LoopLag
from sotrag.app.routing.router import SoTRouter


class FixedClassifier(QuestionClassifier):
    """A classifier that always gives the same probability: isolates the policy under test."""

    name = "router"
    threshold = 0.5

    def __init__(self, p: float) -> None:
        self.p = p

    def probability(self, question: str) -> float:
        return self.p


def load(
    running: int, waiting: int = 0, max_num_seqs: int = 256, kv: float = 0.1, itl: float | None = None
) -> EngineLoad:
    """A snapshot; ``itl`` is the recent ITL in units of the idle one (idle ITL 5 ms)."""
    return EngineLoad(
        running=running,
        waiting=waiting,
        max_num_seqs=max_num_seqs,
        kv_cache_usage=kv,
        itl_s=None if itl is None else 0.005 * itl,
        idle_itl_s=None if itl is None else 0.005,
    )


def test_idle_engine_list_question_takes_sot_with_point_cap() -> None:
    d = SoTRouter(FixedClassifier(0.91)).route("q", load(3))
    assert d.mode == "sot"
    assert d.reason == "router: list-like, p=0.91; load: 3/256 running, kv 10%"
    assert d.cause == "fits"
    assert d.probability == pytest.approx(0.91)
    assert d.max_points == 253  # free batch room


def test_not_list_like_goes_normal_whatever_the_load() -> None:
    d = SoTRouter(FixedClassifier(0.2)).route("q", load(0))
    assert d.mode == "normal" and d.reason.startswith("router: not list-like, p=0.20")
    assert d.max_points is None and d.cause == "question"


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


def test_queued_requests_refuse_sot_long_before_the_slots_fill() -> None:
    """The GPU case: p50 was 10x idle with 27 of 64 slots in use; the queue and the ITL see it."""
    policy = LoadPolicy(max_busy_fraction=0.75, max_waiting=1)
    d = SoTRouter(FixedClassifier(0.9), policy).route("q", load(27, 3, max_num_seqs=64))
    assert d.mode == "normal" and d.cause == "load" and "3 waiting >= 1" in d.reason


def test_slow_steps_refuse_sot_then_hysteresis_holds_until_calm() -> None:
    policy = LoadPolicy(max_itl_ratio=1.5, resume_itl_ratio=1.2)
    router = SoTRouter(FixedClassifier(0.9), policy)
    assert router.route("q", load(20, itl=1.3)).mode == "sot"  # under the refuse threshold
    d = router.route("q", load(40, itl=1.6))
    assert d.mode == "normal" and "itl x1.60 >= x1.50" in d.reason and policy.refusing
    d = router.route("q", load(30, itl=1.3))  # would be fine from calm, but not yet under the resume level
    assert d.mode == "normal" and "still busy" in d.reason
    assert router.route("q", load(10, itl=1.1)).mode == "sot" and not policy.refusing
    assert router.route("q", load(0, itl=3.0)).mode == "sot"  # nothing runs: a stale ITL means nothing


def test_itl_ratio_is_unknown_without_a_baseline() -> None:
    assert load(5).itl_ratio is None and load(0).itl_ratio == 1.0
    assert load(5, itl=2.0).itl_ratio == pytest.approx(2.0)


def test_unknown_load_routes_by_question_only() -> None:
    d = SoTRouter(FixedClassifier(0.9)).route("q", None)
    assert d.mode == "sot" and d.max_points is None and "load: unknown" in d.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_busy_fraction": 0.0},
        {"max_kv_cache_usage": 1.5},
        {"min_free_seqs": 0},
        {"resume_itl_ratio": 3.0},  # resume levels above the refuse levels
        {"max_loop_lag_s": 0.004},
        {"resume_loop_lag_s": 0.0},
    ],
)
def test_policy_rejects_nonsense_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoadPolicy(**kwargs)  # type: ignore[arg-type]


def test_router_is_configured_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from sotrag.app.config import Settings
    from sotrag.app.routing.factory import router_from_config

    monkeypatch.setenv("SOTRAG_ROUTER__THRESHOLD", "0.8")
    monkeypatch.setenv("SOTRAG_ROUTER__MAX_BUSY_FRACTION", "0.5")
    monkeypatch.setenv("SOTRAG_ROUTER__MAX_ITL_RATIO", "1.8")
    router = router_from_config(Settings().router)
    assert router.classifier.threshold == 0.8 and router.policy.max_busy_fraction == 0.5
    assert router.policy.max_itl_ratio == 1.8 and router.policy.resume_itl_ratio == 1.8
    with pytest.raises(ValueError, match="needs the engine"):
        router_from_config(Settings(router={"kind": "llm"}).router)  # type: ignore[arg-type]


class FixedLag(LoopLag):
    """A loop-lag reading chosen by the test."""

    def __init__(self, lag_s: float | None) -> None:
        super().__init__()
        self.value = lag_s

    def watch(self) -> None:
        pass

    def lag_s(self) -> float | None:
        return self.value


def test_a_lagging_event_loop_refuses_sot_then_hysteresis_holds_until_calm() -> None:
    """The engine's stats are calm, but this process's loop is late: SoT's extra streams would cost it most."""
    policy = LoadPolicy(max_loop_lag_s=0.020, resume_loop_lag_s=0.005)
    lag = FixedLag(0.002)
    router = SoTRouter(FixedClassifier(0.9), policy, loop_lag=lag)
    assert router.route("q", load(10, itl=1.1)).mode == "sot"
    lag.value = 0.030
    d = router.route("q", load(10, itl=1.1))
    assert d.mode == "normal" and d.cause == "load" and "loop lag 30 ms >= 20 ms" in d.reason and policy.refusing
    lag.value = 0.010  # under the refuse level, not yet under the resume level
    d = router.route("q", load(10, itl=1.1))
    assert d.mode == "normal" and "still busy" in d.reason and "loop lag 10 ms" in d.reason
    lag.value = 0.001
    assert router.route("q", load(10, itl=1.1)).mode == "sot" and not policy.refusing
    lag.value = None  # not measured: the engine's stats alone decide
    assert router.route("q", load(10, itl=1.1)).mode == "sot"
    lag.value = 0.5  # even with no engine stats at all
    d = router.route("q", None)
    assert d.mode == "normal" and "loop lag 500 ms" in d.reason


def test_loop_lag_levels_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from sotrag.app.config import Settings
    from sotrag.app.routing.factory import router_from_config

    monkeypatch.setenv("SOTRAG_ROUTER__MAX_LOOP_LAG_MS", "40")
    monkeypatch.setenv("SOTRAG_ROUTER__RESUME_LOOP_LAG_MS", "10")
    policy = router_from_config(Settings().router).policy
    assert policy.max_loop_lag_s == pytest.approx(0.040) and policy.resume_loop_lag_s == pytest.approx(0.010)
    monkeypatch.setenv("SOTRAG_ROUTER__RESUME_LOOP_LAG_MS", "50")
    with pytest.raises(ValidationError, match="resume_loop_lag_ms must be <="):
        Settings()


def test_metrics_export_the_policy_state_and_the_loop_lag() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from sotrag.app.serving.metrics import Metrics

    def value(metrics: Metrics, name: str) -> float:
        text = metrics.render()[0].decode()
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    metrics = Metrics(CollectorRegistry())
    policy = LoadPolicy()
    lag = FixedLag(0.0375)
    router = SoTRouter(FixedClassifier(0.9), policy, loop_lag=lag)
    assert router.route("q", load(10)).mode == "normal"  # 37.5 ms of loop lag: refused
    metrics.refresh_router(router)
    assert value(metrics, "sotrag_event_loop_lag_seconds") == pytest.approx(0.0375)
    assert value(metrics, "sotrag_load_policy_refusing") == 1
    lag.value = None  # not measured (auto has not run): the last reading stays
    metrics.refresh_router(router)
    assert value(metrics, "sotrag_event_loop_lag_seconds") == pytest.approx(0.0375)
    metrics.refresh_router(None)  # no router configured: nothing to read, nothing breaks
