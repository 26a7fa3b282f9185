"""``mode="auto"``: the trained router and the load policy pick the path.

The routing itself (which path for which question and which load snapshot, the points capped by free batch
room, a lagging loop) runs on the scripted engine, whose ``load()`` is a chosen snapshot. What reads vLLM's own
stats or asks the model (the LLM router, real saturation, the real queue and ITL) runs on the real tiny engine:
it writes gibberish, so those tests check which path ran and the reason recorded, not content."""

from __future__ import annotations

from typing import Any

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.engines.base import EngineLoad
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.events import AnswerDone, RouteEvent
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.routing.classifier import TrainedRouter
from sotrag.app.routing.llm_router import LLMRouter
from sotrag.app.routing.load_policy import LoadPolicy
from sotrag.app.routing.loop_lag import LoopLag
from sotrag.app.routing.router import SoTRouter
from tests.fakes import ScriptedEngine, sampling

LIST_QUESTION = "What are some tips to sleep better?"
MATH_QUESTION = "A train travels 120 km in 1.5 hours. What is its average speed in km/h?"
SAMPLING = sampling(point_max_tokens=8, normal_max_tokens=16, skeleton_max_tokens=256)
SOT = SoTConfig(min_points=2, max_points=6, min_words=2, max_words=4)


def loaded(running: int, waiting: int = 0, kv: float = 0.1) -> ScriptedEngine:
    """A scripted engine reporting a chosen scheduler snapshot (32 batch slots)."""
    engine = ScriptedEngine()
    engine.load_snapshot = EngineLoad(running, waiting, engine.max_num_seqs, kv)
    return engine


@pytest.fixture(scope="module")
def router() -> SoTRouter:
    # no loop-lag monitor: these tests isolate the engine's stats (a starved CI host can lag its loop)
    return SoTRouter(TrainedRouter(), LoadPolicy(max_busy_fraction=0.75, min_free_seqs=2))


async def answer(engine: Any, router: SoTRouter, question: str) -> tuple[RouteEvent, Any]:
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=SOT), router=router)
    events = [e async for e in pipeline.stream(question, mode="auto")]
    route = next(e for e in events if isinstance(e, RouteEvent))
    assert isinstance(events[-1], AnswerDone)
    return route, events[-1].result


async def test_auto_takes_sot_for_a_list_question(scripted_engine: ScriptedEngine, router: SoTRouter) -> None:
    route, result = await answer(scripted_engine, router, LIST_QUESTION)
    assert route.mode == "sot" and result.requested_mode == "auto"
    assert result.mode == "sot" and len(result.points) >= 2
    assert result.route_reason == route.reason
    assert route.reason.startswith("router: list-like, p=") and "0/32 running" in route.reason


async def test_auto_takes_normal_for_a_math_question(scripted_engine: ScriptedEngine, router: SoTRouter) -> None:
    route, result = await answer(scripted_engine, router, MATH_QUESTION)
    assert route.mode == "normal" and result.mode == "normal" and result.points == []
    assert [r.request_id.rsplit("-", 1)[-1] for r in scripted_engine.requests] == ["normal"]
    assert result.route_reason.startswith("router: not list-like, p=")


async def test_auto_falls_back_to_normal_on_a_saturated_engine(router: SoTRouter) -> None:
    busy = loaded(running=30, waiting=4)
    route, result = await answer(busy, router, LIST_QUESTION)
    assert route.mode == "normal" and result.mode == "normal" and result.skeleton == ""
    assert "router: list-like" in route.reason and "4 waiting >= 1" in route.reason
    assert result.route_cause == "load"


async def test_auto_caps_points_by_free_batch_room(router: SoTRouter) -> None:
    tolerant = SoTRouter(router.classifier, LoadPolicy(max_busy_fraction=0.95, min_free_seqs=2))
    nearly_full = loaded(running=28)  # 4 of 32 slots free: at most 4 points (SOT allows 6, the script writes 9)
    route, result = await answer(nearly_full, tolerant, LIST_QUESTION)
    assert route.mode == "sot" and "28/32 running" in route.reason
    assert result.mode == "sot" and len(result.points) == 4


@pytest.mark.engine
async def test_llm_router_classifies_with_the_engine(engine: VLLMEngine) -> None:
    """The prompting router's plumbing: one regex-constrained letter from the real engine, asked from the
    worker thread the pipeline routes in. (The tiny model's letter is random; only its form is checked.)"""
    llm = LLMRouter(engine)  # made inside the engine's loop: captures it
    assert await llm.aclassify(LIST_QUESTION) in ("A", "B", "C")
    router = SoTRouter(llm)
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=SOT), router=router)
    result = await pipeline.run(LIST_QUESTION, mode="auto")
    assert result.route_reason is not None and result.route_reason.startswith("router(llm): ")
    expected = "sot" if "list-like, p=1.00" in result.route_reason else "normal"
    assert result.mode == expected or result.fallback_reason


async def test_factory_pipeline_routes_auto_with_the_trained_router(scripted_engine: ScriptedEngine) -> None:
    from sotrag.app.factory import create_pipeline

    pipeline = await create_pipeline(Settings(sampling=SAMPLING, sot=SOT), engine=scripted_engine)
    result = await pipeline.run(MATH_QUESTION, mode="auto")
    assert result.mode == "normal" and result.route_reason is not None
    assert result.route_reason.startswith("router: not list-like, p=")


@pytest.mark.engine
async def test_real_saturation_from_vllm_stats_routes_to_normal(engine: VLLMEngine, router: SoTRouter) -> None:
    """No simulation: enough long requests really running that vLLM's own scheduler stats cross the limit."""
    import asyncio

    from sotrag.app.engines.base import GenerationRequest, SamplingOptions

    busy_limit = int(engine.load().max_num_seqs * 0.75)
    long = SamplingOptions(max_tokens=2000, min_tokens=2000, ignore_eos=True)

    async def hog(i: int) -> None:
        async for _ in engine.generate(GenerationRequest(f"hog-{i}", "<|im_start|>user\nhi<|im_end|>\n", long)):
            pass

    hogs = [asyncio.create_task(hog(i)) for i in range(busy_limit + 2)]
    try:
        for _ in range(200):  # wait until the scheduler reports them (a few engine steps)
            await asyncio.sleep(0.05)
            if engine.load().running + engine.load().waiting >= busy_limit:
                break
        route, result = await answer(engine, router, LIST_QUESTION)
        assert route.mode == "normal" and result.mode == "normal"
        assert "list-like" in route.reason and "saturated" in route.reason
    finally:
        for task in hogs:
            task.cancel()
        await asyncio.gather(*hogs, return_exceptions=True)
    assert engine.num_unfinished_requests() == 0


@pytest.mark.engine
async def test_policy_reads_the_real_queue_and_itl_from_vllm(engine: VLLMEngine) -> None:
    """No simulation: more long requests than batch slots. vLLM's own stats (through the stat-logger tap) show
    the queue, the inter-token latency and the tokens per step; the policy refuses SoT on the queue alone
    (slot limits off), then, once the engine is idle again, lets SoT back in (hysteresis released)."""
    import asyncio

    from sotrag.app.engines.base import GenerationRequest, SamplingOptions

    policy = LoadPolicy(max_busy_fraction=1.0, min_free_seqs=1, max_waiting=1, max_itl_ratio=100.0)
    slots = engine.load().max_num_seqs
    long = SamplingOptions(max_tokens=2000, min_tokens=2000, ignore_eos=True)

    async def hog(i: int) -> None:
        async for _ in engine.generate(GenerationRequest(f"queue-{i}", "<|im_start|>user\nhi<|im_end|>\n", long)):
            pass

    hogs = [asyncio.create_task(hog(i)) for i in range(slots + 4)]
    try:
        for _ in range(400):
            await asyncio.sleep(0.05)
            seen = engine.load()
            if seen.waiting >= 1 and seen.running == slots and seen.itl_s is not None:
                break
        assert seen.waiting >= 1 and seen.running == slots
        assert seen.itl_s is not None and seen.itl_s > 0 and seen.tokens_per_step and seen.tokens_per_step >= 1
        verdict = policy.check(seen)
        assert not verdict.ok and f"{seen.waiting} waiting >= 1" in verdict.text and policy.refusing
    finally:
        for task in hogs:
            task.cancel()
        await asyncio.gather(*hogs, return_exceptions=True)
    for _ in range(200):
        await asyncio.sleep(0.05)
        idle = engine.load()
        if idle.running == 0 and idle.waiting == 0:
            break
    assert idle.itl_ratio == 1.0
    verdict = policy.check(idle)
    assert verdict.ok and not policy.refusing


async def test_a_lagging_event_loop_routes_to_normal_then_sot_comes_back(scripted_engine: ScriptedEngine) -> None:
    """The real monitor on the real loop: while callbacks hold the loop (as a saturated output handler would),
    auto answers normally with the loop lag as the reason; once the loop is calm again, SoT comes back."""
    import asyncio
    import time

    lag = LoopLag(interval_s=0.01, window_s=0.5)
    router = SoTRouter(TrainedRouter(), LoadPolicy(max_loop_lag_s=0.020, resume_loop_lag_s=0.005), loop_lag=lag)
    lag.watch()
    loop = asyncio.get_running_loop()
    end = time.monotonic() + 3.0

    def hog() -> None:
        time.sleep(0.06)
        if time.monotonic() < end:
            loop.call_soon(hog)

    try:
        loop.call_soon(hog)
        await asyncio.sleep(0.6)
        route, result = await answer(scripted_engine, router, LIST_QUESTION)
        assert route.mode == "normal" and result.mode == "normal" and result.route_cause == "load"
        assert "list-like" in route.reason and "loop lag" in route.reason and " ms >= 20 ms" in route.reason
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
        for _ in range(40):  # calm: the window has moved past the hog
            await asyncio.sleep(0.1)
            current = lag.lag_s()
            if current is not None and current < 0.005:
                break
        route, result = await answer(scripted_engine, router, LIST_QUESTION)
        assert route.mode == "sot" and result.mode == "sot", route.reason
    finally:
        lag.stop()
