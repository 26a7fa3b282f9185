"""The SoT pipeline: its own logic on the scripted engine, and what needs a model on the real tiny vLLM engine.

Scripted (``tests/fakes.py``, no model): event order, numbering and assembly, fallback, eager expansion, the
points' hand-over, cancellation of the point tasks, passages, history and per-point retrieval in the prompts,
the context budget. The script is known, so these check exact values.

Real engine (``engine``, CPU, random weights): the points decoded in one batch, the prefix cache, aborting
requests inside vLLM, the engine's tokenization cache, vLLM's ``stream_interval``. The model writes gibberish,
so these check structure and timing relations recorded by the pipeline, never wall-clock thresholds and never
content beyond what the regex guarantees.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from sotrag.app.config import Settings, SoTConfig
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    EngineError,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
    Event,
    FallbackEvent,
    PointDelta,
    PointDone,
    PointStarted,
    SkeletonDelta,
    SkeletonDone,
    SourcesEvent,
)
from sotrag.app.pipeline import QuestionTooLong, SoTPipeline
from sotrag.retrieval.types import Passage
from tests.conftest import TEST_BLOCK_SIZE
from tests.fakes import DEFAULT_SCRIPT, ListRetriever, PerPointRetriever, ScriptedEngine, sampling, stage_of

QUESTION = "What are good ways to sleep better at night?"
# Points long enough to overlap in time; min_tokens keeps stop strings from ending a point at once. Seeded
# sampling keeps the random model from repeating one skeleton line (duplicates are dropped by the parser).
SAMPLING = sampling(point_max_tokens=24, point_min_tokens=12, normal_max_tokens=48)
POINT_TEXT = DEFAULT_SCRIPT["point"]


def sot(n: int, **kw: Any) -> SoTConfig:
    """Guided from the start: these tests are about expansion, and the tiny model's unguided skeleton is
    gibberish (the unguided path and its retry: tests/test_skeleton_path.py)."""
    kw.setdefault("guided_skeleton", True)
    return SoTConfig(min_points=n, max_points=n, min_words=2, max_words=4, **kw)


async def collect(pipeline: SoTPipeline, question: str = QUESTION, **kw: Any) -> tuple[list[Event], AnswerResult]:
    kw.setdefault("mode", "sot")  # the mode these tests are about (the default, auto, would ask a router)
    events = [event async for event in pipeline.stream(question, **kw)]
    assert isinstance(events[-1], AnswerDone)
    return events, events[-1].result


# -- the pipeline's own logic, on the scripted engine -----------------------------------------------------------


async def test_sot_streams_skeleton_then_points_and_assembles_in_order(scripted_engine: ScriptedEngine) -> None:
    n = 4
    pipeline = SoTPipeline(scripted_engine, Settings(sampling=SAMPLING, sot=sot(n)))
    events, result = await collect(pipeline)

    assert result.mode == "sot" and result.fallback_reason is None
    kinds = [type(e) for e in events]
    done_at = kinds.index(SkeletonDone)
    assert all(k is SkeletonDelta for k in kinds[:done_at])
    assert kinds[done_at + 1 : done_at + 1 + n] == [PointStarted] * n
    titles = [f"Point number {w}" for w in ("one", "two", "three", "four")]
    assert next(e for e in events if isinstance(e, SkeletonDone)).points == titles
    assert [(e.index, e.title) for e in events if isinstance(e, PointStarted)] == list(enumerate(titles, start=1))
    assert [p.index for p in result.points] == list(range(1, n + 1))
    assert result.answer == "\n".join(f"{i}. {t}{POINT_TEXT}" for i, t in enumerate(titles, start=1))
    # one skeleton request and one per point, each point prompt ending in its open "i. title"
    points = scripted_engine.stage_requests("point")
    assert [stage_of(r.request_id) for r in points] == [f"point{i}" for i in range(1, n + 1)]
    assert all(r.prompt.endswith(f"{i}. {t}") for i, (r, t) in enumerate(zip(points, titles, strict=True), start=1))
    # the stats add up: tokens of the skeleton (as far as it was read) and of each point
    point_tokens = len(POINT_TEXT.split())
    assert [p.tokens for p in result.points] == [point_tokens] * n
    assert result.stats.skeleton_tokens == len(result.skeleton.split())
    assert result.stats.tokens == result.stats.skeleton_tokens + n * point_tokens
    assert result.stats.num_points == n
    assert result.stats.prompt_tokens.points == sum(len(r.prompt_token_ids or ()) for r in points)
    assert 0 < result.stats.ttft_s <= result.stats.total_s  # type: ignore[operator]
    # the skeleton request was ended once n lines were complete; every point request ran to its end
    assert scripted_engine.aborted == [scripted_engine.stage_requests("skeleton")[0].request_id]
    assert scripted_engine.num_unfinished_requests() == 0


async def test_points_finishing_out_of_order_keep_their_numbers() -> None:
    """The last point finishes first; events carry each point's own index and the answer reads in order."""
    engine = ScriptedEngine(
        {**DEFAULT_SCRIPT, "point1": " slow first.", "point2": " middle.", "point3": " fast third."},
        delay_s=lambda r: {"point1": 0.02, "point2": 0.01}.get(stage_of(r.request_id), 0.0),
    )
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(3)))
    events, result = await collect(pipeline)
    assert [e.index for e in events if isinstance(e, PointDone)] == [3, 2, 1]
    assert [(e.index, e.text) for e in events if isinstance(e, PointDone)] == [
        (3, " fast third."), (2, " middle."), (1, " slow first.")
    ]
    assert result.answer == (
        "1. Point number one slow first.\n2. Point number two middle.\n3. Point number three fast third."
    )
    deltas = {i: "".join(e.text for e in events if isinstance(e, PointDelta) and e.index == i) for i in (1, 2, 3)}
    assert deltas == {1: " slow first.", 2: " middle.", 3: " fast third."}


class OrderRecordingEngine(ScriptedEngine):
    """Records, in order, each point prompt being encoded and each request being sent, with the event loop's
    iteration (``tick``) at the send."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, int]] = []
        self.tick = 0

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        if continue_final_message:  # a point prompt (it ends in the open "i. title")
            self.log.append(("encode", "point", self.tick))
        return super().encode_chat(messages, continue_final_message=continue_final_message)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.log.append(("send", request.request_id, self.tick))
        return super().generate(request)

    async def count_loop_iterations(self) -> None:
        while True:
            self.tick += 1
            await asyncio.sleep(0)


async def test_points_reach_the_engine_together() -> None:
    """Every point request is built before the first is sent, and all are sent in one turn of the event loop.
    On the GPU, points handed over one by one (each built, then sent) were prefilled in two engine steps, the
    first point alone: one extra prefill step between the skeleton and the answer (docs/BENCHMARKS.md)."""
    n = 4
    recording = OrderRecordingEngine()
    ticker = asyncio.create_task(recording.count_loop_iterations())
    try:
        pipeline = SoTPipeline(recording, Settings(sampling=SAMPLING, sot=sot(n)))
        _, result = await collect(pipeline)
    finally:
        ticker.cancel()
    assert result.mode == "sot" and len(result.points) == n
    point_log = [entry for entry in recording.log if entry[1] == "point" or "-point" in entry[1]]
    kinds = [kind for kind, _, _ in point_log]
    assert kinds == ["encode"] * n + ["send"] * n, point_log
    assert len({tick for kind, _, tick in point_log if kind == "send"}) == 1, point_log


async def test_normal_mode_streams_plain_text(scripted_engine: ScriptedEngine) -> None:
    pipeline = SoTPipeline(scripted_engine, Settings(sampling=SAMPLING))
    events, result = await collect(pipeline, mode="normal")
    assert result.mode == "normal" and result.points == [] and result.skeleton == ""
    streamed = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert streamed == DEFAULT_SCRIPT["normal"] == result.answer
    assert result.stats.tokens == len(result.answer.split()) and result.stats.skeleton_s is None
    assert [stage_of(r.request_id) for r in scripted_engine.requests] == ["normal"]


async def test_too_few_points_falls_back_to_normal(scripted_engine: ScriptedEngine) -> None:
    pipeline = SoTPipeline(scripted_engine, Settings(sampling=SAMPLING, sot=sot(1, fallback_min_points=2)))
    events, result = await collect(pipeline)
    kinds = [type(e) for e in events]
    assert kinds.index(FallbackEvent) < kinds.index(AnswerDelta)
    assert result.mode == "normal" and result.requested_mode == "sot"
    assert result.fallback_reason == "the guided skeleton had 1 usable point(s), fewer than 2: normal decoding"
    assert result.skeleton.startswith("1. Point number one")  # the skeleton was written, then abandoned
    assert result.answer == DEFAULT_SCRIPT["normal"] and result.points == []
    assert [stage_of(r.request_id) for r in scripted_engine.requests] == ["skeleton", "normal"]


async def test_eager_expansion_starts_points_during_the_skeleton() -> None:
    engine = ScriptedEngine(delay_s=0.002)  # every delta takes time: the skeleton is written over ~30 ms
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(4, eager=True)))
    _, result = await collect(pipeline)
    assert result.stats.skeleton_s is not None
    # the skeleton starts at >= 0 s, so starting before skeleton_s means starting while it was written
    assert result.points[0].start_s < result.stats.skeleton_s
    assert len(result.points) == 4


async def read_until_a_point(pipeline: SoTPipeline, how: str, timeout_s: float) -> Callable[[], Awaitable[None]]:
    """Read an SoT answer until a point's text comes; returns how the consumer goes away: ``aclose`` stops reading
    and closes the stream, ``cancel`` cancels the reading task."""
    seen_point = asyncio.Event()

    async def consume(stream: AsyncIterator[object]) -> None:
        async for event in stream:
            if isinstance(event, PointDelta):
                seen_point.set()
                if how == "aclose":
                    return

    stream = pipeline.stream(QUESTION, mode="sot")
    task = asyncio.create_task(consume(stream))
    await asyncio.wait_for(seen_point.wait(), timeout=timeout_s)

    async def stop() -> None:
        if how == "cancel":
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await task
            await stream.aclose()

    return stop


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_cancelling_the_stream_ends_every_point_task(how: str) -> None:
    """A consumer that stops reading (closes the stream, or its task is cancelled) ends every point's request:
    each stream is closed before its end, none is left open."""
    engine = ScriptedEngine({**DEFAULT_SCRIPT, "point": " word" * 400}, delay_s=0.001)
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING.model_copy(update={"point_max_tokens": 400}),
                                            sot=sot(5)))
    stop = await read_until_a_point(pipeline, how, timeout_s=30)
    assert engine.num_unfinished_requests() == 5
    await stop()
    assert engine.num_unfinished_requests() == 0
    points = [r.request_id for r in engine.stage_requests("point")]
    assert len(points) == 5 and set(points) <= set(engine.aborted)
    assert all(len(engine.streamed[rid]) < len(" word" * 400) for rid in points)


async def test_a_failing_point_request_ends_the_answer_and_its_other_points() -> None:
    """An engine error in one point is the answer's error (not a silently missing point), and the other points'
    requests are not left running."""

    def script(request: GenerationRequest) -> str:
        stage = stage_of(request.request_id)
        if stage == "point2":
            raise EngineError("the engine lost point 2")
        return " word" * 300 if stage.startswith("point") else DEFAULT_SCRIPT["skeleton"]

    engine = ScriptedEngine(script, delay_s=0.001)
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING.model_copy(update={"point_max_tokens": 300}),
                                            sot=sot(3)))
    with pytest.raises(EngineError, match="lost point 2"):
        await collect(pipeline)
    assert engine.num_unfinished_requests() == 0
    assert {"point1", "point3"} <= {stage_of(rid) for rid in engine.aborted}


async def test_grounded_history_and_passages_are_in_every_prompt(scripted_engine: ScriptedEngine) -> None:
    passages = [
        Passage(text="Keep the bedroom cool and dark. " * 6, source="sleep/room.md", heading="Room", score=0.9),
        Passage(text="Avoid caffeine after noon. " * 6, source="sleep/food.md", heading="Food", score=0.8),
    ]
    retriever = ListRetriever(passages)
    pipeline = SoTPipeline(scripted_engine, Settings(sampling=SAMPLING, sot=sot(3)), retriever=retriever)
    history = [("How long should adults sleep?", "Seven to nine hours.")]
    events, result = await collect(pipeline, history=history, top_k=2, filters={"source": "sleep/*"})

    assert isinstance(events[0], SourcesEvent)
    assert [(s.n, s.source) for s in result.sources] == [(1, "sleep/room.md"), (2, "sleep/food.md")]
    assert retriever.queries == [QUESTION] and retriever.filters == [{"source": "sleep/*"}]
    requests = scripted_engine.requests
    assert len(requests) == 1 + 3
    for request in requests:
        prompt = request.prompt
        assert (
            prompt.index('<passage n="1" source="sleep/room.md > Room">')
            < prompt.index("Seven to nine hours.")
            < prompt.index(QUESTION)
        )
    # the skeleton request's whole prompt is the start of every point prompt, in text and in ids: the points
    # continue the skeleton request's own ids (prompt, then what it wrote)
    skeleton, *points = requests
    skeleton_ids = skeleton.prompt_token_ids or ()
    assert all(r.prompt.startswith(skeleton.prompt) for r in points)
    assert all((r.prompt_token_ids or ())[: len(skeleton_ids)] == skeleton_ids for r in points)
    assert all(p.skeleton_prefix_tokens > len(skeleton_ids) for p in result.points)


async def test_passages_over_the_context_budget_are_dropped_in_order() -> None:
    """Passages that would take more than ``context_share`` of the model's context are left out: the first ones
    that fit are kept, in order, and the answer says how many were dropped."""
    engine = ScriptedEngine(max_model_len=2048)
    budget = int(engine.max_model_len * 0.2)
    words = "sleep needs a cool dark quiet room and a fixed time "
    passages = [
        Passage(text=words * 3, source="short1.md", heading="S", score=0.9),
        Passage(text=words * (budget // 4), source="huge.md", heading="H", score=0.8),  # alone over the budget
        Passage(text=words * 3, source="short2.md", heading="S", score=0.7),
    ]
    assert engine.count_tokens(passages[1].text) > budget
    settings = Settings(sampling=SAMPLING, sot=sot(3), context_share=0.2)
    pipeline = SoTPipeline(engine, settings, retriever=ListRetriever(passages))
    _, result = await collect(pipeline, top_k=3)
    assert [s.source for s in result.sources] == ["short1.md", "short2.md"]
    assert [s.n for s in result.sources] == [1, 2]
    assert result.stats.passages_dropped == 1
    skeleton_prompt = engine.requests[0].prompt
    assert 'source="short2.md' in skeleton_prompt and "huge.md" not in skeleton_prompt


async def test_question_longer_than_the_context_is_rejected_before_generation() -> None:
    engine = ScriptedEngine(max_model_len=2048)
    pipeline = SoTPipeline(engine)
    with pytest.raises(QuestionTooLong, match="2048 tokens"):
        await pipeline.validate("sleep " * 3000)
    with pytest.raises(QuestionTooLong, match="2048 tokens"):
        await collect(pipeline, question="sleep " * 3000)
    with pytest.raises(ValueError, match="empty"):
        await collect(pipeline, question="   ")
    assert engine.requests == []


async def test_per_point_retrieval_appends_after_the_shared_prefix(scripted_engine: ScriptedEngine) -> None:
    shared = [Passage(text="Keep the bedroom cool. " * 8, source="room.md", chunk_id="c1", score=0.9)]
    extra = [
        Passage(text="Morning light sets the body clock.", source="light.md", chunk_id="c2", score=0.5),
        Passage(text="Exercise early in the day.", source="sport.md", chunk_id="c3", score=0.4),
    ]
    settings = Settings(sampling=SAMPLING, sot=sot(3), per_point_retrieval=True, per_point_k=2)
    retriever = PerPointRetriever(QUESTION, shared, extra)
    pipeline = SoTPipeline(scripted_engine, settings, retriever=retriever)
    _, result = await collect(pipeline, top_k=1)

    assert retriever.queries[0] == QUESTION
    assert sorted(retriever.queries[1:]) == [f"{QUESTION} Point number {w}" for w in ("one", "three", "two")]
    # each passage numbered once, in the order first found, after the shared ones
    assert [(s.n, s.source) for s in result.sources] == [(1, "room.md"), (2, "light.md"), (3, "sport.md")]
    skeleton, *points = scripted_engine.requests
    assert len(points) == 3
    skeleton_ids = skeleton.prompt_token_ids or ()
    for request in points:
        assert request.prompt.startswith(skeleton.prompt)
        assert (request.prompt_token_ids or ())[: len(skeleton_ids)] == skeleton_ids
        tail = request.prompt[len(skeleton.prompt) :]
        assert '<passage n="2" source="light.md">' in tail and '<passage n="3" source="sport.md">' in tail
        assert 'source="room.md"' not in tail  # the shared passage is in the shared prefix only


# -- what needs the real engine ---------------------------------------------------------------------------------


class RecordingEngine:
    """The real engine, plus a record of every request it was sent."""

    def __init__(self, inner: VLLMEngine) -> None:
        self.inner = inner
        self.requests: list[GenerationRequest] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return self.inner.render_chat(messages, continue_final_message=continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        return self.inner.encode_chat(messages, continue_final_message=continue_final_message)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(request)
        return self.inner.generate(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def load(self) -> EngineLoad:
        return self.inner.load()

    async def aclose(self) -> None:  # the session fixture owns the engine
        pass


@pytest.mark.engine
async def test_sot_expands_all_points_in_one_batch(engine: VLLMEngine) -> None:
    n = 4
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(n)))
    events, result = await collect(pipeline)

    assert result.mode == "sot" and result.fallback_reason is None
    assert [p.index for p in result.points] == list(range(1, n + 1))
    # skeleton streams first, then the points
    kinds = [type(e) for e in events]
    done_at = kinds.index(SkeletonDone)
    assert all(k is SkeletonDelta for k in kinds[:done_at])
    assert kinds[done_at + 1 : done_at + 1 + n] == [PointStarted] * n
    assert {e.index for e in events if isinstance(e, PointDone)} == set(range(1, n + 1))

    # Decoded in the same batch: every point's first token arrives before any point's last token.
    # (A sequential engine would finish point 1 before point 2 starts.)
    first_tokens = [p.first_token_s for p in result.points if p.first_token_s is not None]
    ends = [p.end_s for p in result.points if p.end_s is not None]
    assert len(first_tokens) == len(ends) == n
    assert max(first_tokens) < min(ends)

    # Prefix cache: each point request reuses at least the skeleton request's prompt, in whole KV blocks.
    shared = result.stats.prompt_tokens.skeleton // TEST_BLOCK_SIZE * TEST_BLOCK_SIZE
    assert shared > 0
    assert all(p.cached_prompt_tokens >= shared for p in result.points)
    assert result.stats.cached_prompt_tokens.points >= n * shared

    # Assembled in skeleton order, and the stats add up.
    assert result.answer.startswith(f"1. {result.points[0].title}{result.points[0].text}".rstrip())
    assert result.stats.tokens == result.stats.skeleton_tokens + sum(p.tokens for p in result.points)
    assert result.stats.num_points == n
    assert 0 < result.stats.ttft_s <= result.stats.total_s  # type: ignore[operator]
    assert engine.num_unfinished_requests() == 0


@pytest.mark.engine
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_cancelling_the_stream_aborts_every_request(engine: VLLMEngine, how: str) -> None:
    slow = SAMPLING.model_copy(update={"point_max_tokens": 400, "point_min_tokens": 400})
    pipeline = SoTPipeline(engine, Settings(sampling=slow, sot=sot(5)))
    stop = await read_until_a_point(pipeline, how, timeout_s=120)
    assert engine.num_unfinished_requests() >= 1
    await asyncio.sleep(0.2)  # a few engine steps: vLLM's scheduler stats reach engine.load()
    assert engine.load().running >= 1
    await stop()
    assert engine.num_unfinished_requests() == 0


@pytest.mark.engine
async def test_passages_are_tokenized_once_per_answer(engine: VLLMEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The context budget is checked on the system text that every prompt carries, so when the passages fit,
    that one tokenization is all they cost: the engine's content cache serves it to the skeleton and to every
    point. (Counting each passage, then encoding the joined text, tokenized them twice.)"""
    from sotrag.app.engines import chat_ids

    marker = f"zq{uuid.uuid4().hex[:10]}"  # fresh text: the session engine's content cache has never seen it
    passages = [
        Passage(text=f"{marker} keep the bedroom cool and dark. " * 4, source="a.md", heading="A", score=0.9),
        Passage(text=f"{marker} avoid caffeine after noon. " * 4, source="b.md", heading="B", score=0.8),
    ]
    encoded: list[str] = []
    real = chat_ids.encode_plain

    def counting(tokenizer: object, text: str) -> list[int]:
        if marker in text:
            encoded.append(text)
        return real(tokenizer, text)

    monkeypatch.setattr(chat_ids, "encode_plain", counting)
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(3)), retriever=ListRetriever(passages))
    _, result = await collect(pipeline, top_k=2)
    assert result.mode == "sot" and len(result.points) == 3
    assert result.stats.passages_dropped == 0 and len(result.sources) == 2
    assert len(encoded) == 1, [text[:80] for text in encoded]


class DeltaRecordingEngine(RecordingEngine):
    """The real engine, plus every delta's token count, per request."""

    def __init__(self, inner: VLLMEngine) -> None:
        super().__init__(inner)
        self.deltas: dict[str, list[int]] = {}

    async def _recorded(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        async for delta in self.inner.generate(request):
            self.deltas.setdefault(request.request_id, []).append(delta.new_tokens)
            yield delta

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.requests.append(request)
        return self._recorded(request)


@pytest.mark.engine
async def test_stream_interval_coalesces_point_and_normal_deltas_not_the_skeleton(engine: VLLMEngine) -> None:
    """``sampling.stream_interval`` = 4: vLLM sends each point's and a normal answer's tokens 4 to a delta
    (fewer deltas for the event loop to handle), the skeleton still token by token (its lines are acted on as
    they end); no token is lost."""
    n, interval = 16, 4
    sampling = SAMPLING.model_copy(update={"point_max_tokens": n, "point_min_tokens": n, "normal_max_tokens": n,
                                           "normal_min_tokens": n, "stream_interval": interval})
    recording = DeltaRecordingEngine(engine)
    pipeline = SoTPipeline(recording, Settings(sampling=sampling, sot=sot(3)))
    _, result = await collect(pipeline)
    _, normal = await collect(pipeline, mode="normal")
    assert result.mode == "sot" and [p.tokens for p in result.points] == [n] * 3 and normal.stats.tokens == n
    by_stage: dict[str, list[list[int]]] = {}
    for rid, sizes in recording.deltas.items():
        by_stage.setdefault(rid.rsplit("-", 1)[-1].rstrip("0123456789"), []).append([s for s in sizes if s])
    assert sorted(by_stage) == ["normal", "point", "skeleton"], recording.deltas
    # AsyncLLM merges the deltas a slow reader has not taken yet (RequestOutputCollector), so on a busy machine
    # a delta may carry two tokens; token by token still means far more deltas than `interval` would allow.
    assert all(sum(sizes) >= 8 and len(sizes) > 2 + sum(sizes) // interval
               for sizes in by_stage["skeleton"]), by_stage["skeleton"]
    for sizes in by_stage["point"] + by_stage["normal"]:
        # The first token comes at once, then deltas of `interval` (or more, merged as above), then the rest.
        assert sum(sizes) == n and max(sizes) >= interval and len(sizes) <= 2 + n // interval, sizes
    # Each request's options carry it: the points' and the normal answer's, not the skeleton's.
    intervals = {r.request_id.rsplit("-", 1)[-1].rstrip("0123456789"): r.sampling.stream_interval
                 for r in recording.requests}
    assert intervals == {"skeleton": 1, "point": interval, "normal": interval}
