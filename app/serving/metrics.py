"""Prometheus metrics of the server: HTTP requests, answers, latency per SoT stage, tokens, load.

One ``CollectorRegistry`` per app (not the process-global one), so several apps in one process (tests) never
collide and ``/metrics`` shows exactly this server's numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sotrag.app.engines.base import EngineLoad
from sotrag.app.events import AnswerResult
from sotrag.app.routing.base import Router

# Seconds: from a fast retrieval on a GPU to a long answer on a CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0)
STAGES = ("retrieval", "ttft", "skeleton", "expansion", "total")
# Every label value comes from a fixed set, whatever a client sends: an unbounded label (a made-up HTTP method,
# a model name) would grow the registry, and every scrape, without limit.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
MODES = frozenset({"sot", "normal", "auto", "none"})
SURFACES = frozenset({"rest", "openai", "ui"})
OUTCOMES = frozenset({"ok", "error", "cancelled"})
ROUTE_CAUSES = frozenset({"question", "load", "fits", "default"})
OTHER = "other"


def bounded(value: object, allowed: frozenset[str]) -> str:
    """``value`` as a label when it is one of ``allowed``, else ``other``."""
    return value if isinstance(value, str) and value in allowed else OTHER


def status_label(code: object) -> str:
    """An HTTP status as a label: a valid code (100-599, a bounded set), else ``other``."""
    return str(code) if isinstance(code, int) and 100 <= code <= 599 else OTHER


class Metrics:
    """Every metric the server exports, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "sotrag_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "sotrag_http_request_seconds",
            "HTTP request time until the response is complete (streams: until the last event)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "sotrag_answers",
            "answers by surface (rest, openai, ui), requested mode, mode used and outcome "
            "(ok, error, cancelled: the client left before the end)",
            ["surface", "requested_mode", "mode", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "sotrag_stage_seconds",
            "latency per stage of an answer: retrieval, ttft (first token), skeleton, expansion, total",
            ["stage", "mode"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter("sotrag_generated_tokens", "tokens generated", ["mode"], registry=r)
        self.prompt_tokens = Counter("sotrag_prompt_tokens", "prompt tokens sent to the engine", ["mode"], registry=r)
        self.cached_prompt_tokens = Counter(
            "sotrag_cached_prompt_tokens", "prompt tokens served from vLLM's prefix cache", ["mode"], registry=r
        )
        self.points = Histogram(
            "sotrag_points", "points per SoT answer", buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20), registry=r
        )
        self.routes = Counter(
            "sotrag_route_decisions",
            "auto-mode answers by the mode the router chose and what decided it (question: the classifier, "
            "load: the load policy refused SoT, fits: SoT allowed, default: no router)",
            ["mode", "cause"],
            registry=r,
        )
        self.skeleton_retries = Counter(
            "sotrag_skeleton_retries", "SoT answers whose unguided skeleton was asked again, guided", registry=r
        )
        self.fallbacks = Counter("sotrag_fallbacks", "SoT answers that fell back to normal decoding", registry=r)
        self.in_flight = Gauge("sotrag_answers_in_flight", "answers being generated now", registry=r)
        self.engine_unfinished = Gauge(
            "sotrag_engine_unfinished_requests", "requests the engine still holds (running or waiting)", registry=r
        )
        self.engine_running = Gauge("sotrag_engine_running_requests", "engine requests running", registry=r)
        self.engine_waiting = Gauge("sotrag_engine_waiting_requests", "engine requests waiting", registry=r)
        self.engine_kv_usage = Gauge("sotrag_engine_kv_cache_usage", "share of the KV cache in use", registry=r)
        self.engine_itl_ratio = Gauge(
            "sotrag_engine_itl_ratio", "recent inter-token latency over the idle one (load policy signal)", registry=r
        )
        self.load_refusing = Gauge("sotrag_load_policy_refusing", "1 while the load policy refuses SoT", registry=r)
        self.loop_lag = Gauge(
            "sotrag_event_loop_lag_seconds",
            "how late this process's event loop wakes a timer, median over 0.5 s (load policy signal; set once "
            "auto mode has run)",
            registry=r,
        )
        self.ready = Gauge("sotrag_ready", "1 when the engine and the index are loaded", registry=r)

    def observe_answer(self, result: AnswerResult) -> None:
        """Record the stage latencies and tokens of a finished answer."""
        s = result.stats
        mode = bounded(result.mode, MODES)
        values = {
            "retrieval": s.retrieval_s if result.sources or s.retrieval_s else None,
            "ttft": s.ttft_s,
            "skeleton": s.skeleton_s,
            "expansion": s.expansion_s,
            "total": s.total_s,
        }
        for stage, value in values.items():
            if value is not None:
                self.stage_seconds.labels(stage, mode).observe(value)
        self.generated_tokens.labels(mode).inc(s.tokens)
        prompt = s.prompt_tokens.skeleton + s.prompt_tokens.points + s.prompt_tokens.normal
        cached = s.cached_prompt_tokens.skeleton + s.cached_prompt_tokens.points + s.cached_prompt_tokens.normal
        self.prompt_tokens.labels(mode).inc(prompt)
        self.cached_prompt_tokens.labels(mode).inc(cached)
        if mode == "sot":
            self.points.observe(s.num_points)
        if result.fallback_reason:
            self.fallbacks.inc()
        if result.skeleton_retry_reason:
            self.skeleton_retries.inc()
        if result.requested_mode == "auto":
            routed = "normal" if result.route_cause in ("question", "load") else "sot"
            self.routes.labels(routed, bounded(result.route_cause or "default", ROUTE_CAUSES)).inc()

    def count_answer(self, surface: str, requested_mode: str | None, mode: str, outcome: str) -> None:
        """One answer ended: every label from its fixed set."""
        self.answers.labels(
            bounded(surface, SURFACES), bounded(requested_mode or "none", MODES), bounded(mode, MODES),
            bounded(outcome, OUTCOMES),
        ).inc()

    def refresh_engine(
        self, unfinished: Callable[[], int | None] | None, load: Callable[[], EngineLoad] | None
    ) -> None:
        """Read the engine's gauges now (called on every scrape, so they are never stale)."""
        count = unfinished() if unfinished is not None else None
        if count is not None:
            self.engine_unfinished.set(count)
        if load is not None:
            snap = load()
            self.engine_running.set(snap.running)
            self.engine_waiting.set(snap.waiting)
            self.engine_kv_usage.set(snap.kv_cache_usage)
            ratio = snap.itl_ratio
            if ratio is not None:
                self.engine_itl_ratio.set(ratio)

    def refresh_router(self, router: Router | None) -> None:
        """Read auto mode's load-policy state now: whether it refuses SoT, and the event loop's lag."""
        refusing = router.refusing() if router is not None else None
        if refusing is not None:
            self.load_refusing.set(1 if refusing else 0)
        lag = router.loop_lag_s() if router is not None else None
        if lag is not None:
            self.loop_lag.set(lag)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class HTTPMetricsMiddleware:
    """Pure ASGI middleware (streams pass through untouched) counting requests by route template and status.

    The route label is the matched API path template (``/v1/documents/{doc_id}``); everything the Gradio UI
    serves is ``ui`` so its many asset paths cannot blow up the label set.
    """

    def __init__(self, app: Any, metrics: Metrics, api_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.metrics = metrics
        self.api_prefixes = api_prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._route(scope)
            method = bounded(scope.get("method", "GET"), HTTP_METHODS)
            self.metrics.http_requests.labels(route, method, status_label(status["code"])).inc()
            self.metrics.http_seconds.labels(route, method).observe(time.perf_counter() - start)

    def _route(self, scope: dict[str, Any]) -> str:
        path: str = scope.get("path", "")
        if not path.startswith(self.api_prefixes):
            return "ui"
        route = scope.get("route")
        template = getattr(route, "path", None)
        return template if isinstance(template, str) else "unmatched"
