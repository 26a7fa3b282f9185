"""An answer's points reach vLLM as one group (``VLLMEngine.generate_group``): on an idle engine its scheduler is
held while they go in, so one engine step schedules them all; the hold is always released, and a group that
fails half-way leaves nothing behind. Real vLLM (the session's tiny engine); the scheduling step is read from
vLLM's own per-request timestamps (``RequestOutput.metrics.scheduled_ts``, one value per ``schedule()`` call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from sotrag.app.engines.base import GenerationDelta, GenerationRequest, SamplingOptions
from tests.vllm_tap import tap_add_request

if TYPE_CHECKING:
    from sotrag.app.engines.vllm import VLLMEngine

pytestmark = pytest.mark.engine


def _requests(tag: str, n: int) -> list[GenerationRequest]:
    options = SamplingOptions(max_tokens=4, min_tokens=4, temperature=0.0)
    return [
        GenerationRequest(f"group-{tag}-{i}", "", options, prompt_token_ids=tuple(range(10 + i, 60 + i)))
        for i in range(n)
    ]


class _ScheduledAt:
    """Records each request's first scheduling time (vLLM's ``scheduled_ts``) from the outputs it hands out."""

    def __init__(self, engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch, *, gap_s: float = 0.0) -> None:
        self.at: dict[str, float] = {}
        self.gap_s = gap_s
        tap_add_request(engine._llm, monkeypatch, self._output, self._submitted)

    def _output(self, request_id: str, out: Any) -> None:
        ts = getattr(getattr(out, "metrics", None), "scheduled_ts", 0.0)
        if ts:
            self.at.setdefault(request_id, ts)

    async def _submitted(self, request_id: str, prompt: Any) -> None:
        if self.gap_s:  # the next request reaches vLLM this much later: a step can start in between
            await asyncio.sleep(self.gap_s)


async def _read_all(streams: list[AsyncIterator[GenerationDelta]]) -> list[int]:
    async def one(stream: AsyncIterator[GenerationDelta]) -> int:
        return sum([d.new_tokens async for d in stream])

    return list(await asyncio.gather(*(one(s) for s in streams)))


@pytest.mark.parametrize("together", [True, False])
async def test_an_idle_engine_schedules_a_group_in_one_step(
    engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch, together: bool
) -> None:
    # Each request reaches vLLM 50 ms after the one before: without the hold, vLLM starts a step with the first.
    seen = _ScheduledAt(engine, monkeypatch, gap_s=0.05)
    monkeypatch.setattr(engine, "admit_together", together)
    assert engine.num_unfinished_requests() == 0
    reqs = _requests(f"idle-{together}", 4)
    tokens = await _read_all(await engine.generate_group(reqs))
    assert tokens == [4, 4, 4, 4]
    assert set(seen.at) == {r.request_id for r in reqs}
    steps = {seen.at[r.request_id] for r in reqs}
    assert (len(steps) == 1) is together, steps
    assert not await engine._llm.is_paused()
    assert engine.num_unfinished_requests() == 0


async def test_a_busy_engine_is_not_held(engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another request is running: holding the scheduler would stall it, so the group goes in without a pause.
    pauses: list[bool] = []
    send_pause = engine._send_pause

    def pause() -> Any:
        pauses.append(True)
        return send_pause()

    monkeypatch.setattr(engine, "_send_pause", pause)
    options = SamplingOptions(max_tokens=200, min_tokens=200, ignore_eos=True)
    running = engine.generate(GenerationRequest("group-busy-long", "", options, prompt_token_ids=tuple(range(5, 40))))
    first = await anext(running)
    assert first.new_tokens >= 1
    assert engine.num_unfinished_requests() == 1
    assert await _read_all(await engine.generate_group(_requests("busy", 3))) == [4, 4, 4]
    await running.aclose()  # type: ignore[attr-defined]  # closing early aborts it
    assert pauses == []
    assert engine.num_unfinished_requests() == 0
    # and an idle engine is held
    await _read_all(await engine.generate_group(_requests("busy-after", 2)))
    assert pauses == [True]


async def test_a_group_failing_half_way_aborts_what_went_in_and_releases_the_hold(
    engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit = engine._submit
    calls = 0

    async def flaky(request: GenerationRequest) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the third request could not be built")
        return await submit(request)

    monkeypatch.setattr(engine, "_submit", flaky)
    with pytest.raises(RuntimeError, match="third"):
        await engine.generate_group(_requests("fail", 4))
    monkeypatch.undo()
    assert not await engine._llm.is_paused()
    await asyncio.sleep(0.05)
    assert engine.num_unfinished_requests() == 0
    # the engine still serves
    assert await _read_all(await engine.generate_group(_requests("fail-after", 2))) == [4, 4]


async def test_a_stream_of_a_group_closed_unread_is_aborted(engine: VLLMEngine) -> None:
    streams = await engine.generate_group(_requests("unread", 3))
    assert engine.num_unfinished_requests() == 3
    first = streams[0]
    assert (await anext(first)).new_tokens >= 1
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]
    assert engine.num_unfinished_requests() == 0


async def test_the_requests_go_in_while_the_pause_reply_is_on_its_way(
    engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pause is not awaited before the requests: they reach vLLM while its reply is held back here, the
    # paused core schedules none of them, and the resume follows the reply: one step schedules them all.
    core = engine._llm.engine_core
    real_pause = core.pause_scheduler_async
    answer = asyncio.Event()

    async def late_reply(*args: Any, **kwargs: Any) -> None:
        await real_pause(*args, **kwargs)  # the core is paused now
        await answer.wait()

    monkeypatch.setattr(core, "pause_scheduler_async", late_reply)
    monkeypatch.setattr(engine, "admit_together", True)
    seen = _ScheduledAt(engine, monkeypatch)
    submitted: list[str] = []
    tap_add_request(engine._llm, monkeypatch, seen._output, lambda rid, _: submitted.append(rid))
    reqs = _requests("late-reply", 3)
    task = asyncio.create_task(engine.generate_group(reqs))
    for _ in range(600):
        if len(submitted) == len(reqs):
            break
        await asyncio.sleep(0.01)
    assert submitted == [r.request_id for r in reqs]  # all in before the pause was answered
    await asyncio.sleep(0.2)
    assert not task.done() and seen.at == {}  # held: nothing scheduled
    answer.set()
    tokens = await _read_all(await asyncio.wait_for(task, 30))
    assert tokens == [4, 4, 4]
    assert len({seen.at[r.request_id] for r in reqs}) == 1
    assert not await engine._llm.is_paused()


@pytest.mark.parametrize("when", ["before the requests", "between requests"])
async def test_a_cancelled_group_resumes_the_scheduler_and_leaves_nothing(
    engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    monkeypatch.setattr(engine, "admit_together", True)
    gate = asyncio.Event()
    submitted: list[str] = []

    async def on_submit(request_id: str, prompt: Any) -> None:
        submitted.append(request_id)
        gate.set()
        if when == "between requests":
            await asyncio.sleep(10)  # the caller is cancelled before the next request goes in

    tap_add_request(engine._llm, monkeypatch, lambda rid, out: None, on_submit)
    task = asyncio.create_task(engine.generate_group(_requests(f"cancel-{when}", 3)))
    if when == "before the requests":
        await asyncio.sleep(0)  # the group has sent the pause and yields once before its first request
    else:
        await asyncio.wait_for(gate.wait(), 30)
        assert await engine._llm.is_paused()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()
    for _ in range(300):  # the shielded release: the pause's reply, then the resume
        if not await engine._llm.is_paused() and engine.num_unfinished_requests() == 0:
            break
        await asyncio.sleep(0.01)
    assert not await engine._llm.is_paused()
    assert engine.num_unfinished_requests() == 0
    assert len(submitted) == (1 if when == "between requests" else 0)
    assert await _read_all(await engine.generate_group(_requests(f"cancel-after-{when}", 2))) == [4, 4]


async def test_a_vllm_that_refuses_the_pause_still_serves_the_group(
    engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Invalid pause mode: keep")

    monkeypatch.setattr(engine._llm.engine_core, "pause_scheduler_async", refuse)
    monkeypatch.setattr(engine, "admit_together", True)
    assert await _read_all(await engine.generate_group(_requests("refused", 3))) == [4, 4, 4]
    assert engine.admit_together is False  # not asked again
    assert not await engine._llm.is_paused()
