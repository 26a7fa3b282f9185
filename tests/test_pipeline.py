"""The SoT pipeline end to end on a real vLLM engine (CPU) with the tiny random-weight model.

The model writes gibberish, so these tests check structure and timing relations recorded by the pipeline,
never wall-clock thresholds and never content beyond what the regex guarantees.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.base import ChatMessage, ChatPrompt, EngineBase, GenerationDelta, GenerationRequest
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.events import (
    AnswerDelta,
    AnswerDone,
    AnswerResult,
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

pytestmark = pytest.mark.engine

QUESTION = "What are good ways to sleep better at night?"
# Points long enough to overlap in time; min_tokens keeps stop strings from ending a point at once. Seeded
# sampling keeps the random model from repeating one skeleton line (duplicates are dropped by the parser).
SAMPLING = SamplingConfig(
    temperature=1.0, seed=1234, point_max_tokens=24, point_min_tokens=12, normal_max_tokens=48, skeleton_max_tokens=512
)


def sot(n: int, **kw: object) -> SoTConfig:
    """Guided from the start: these tests are about expansion, and the tiny model's unguided skeleton is
    gibberish (the unguided path and its retry: tests/test_skeleton_path.py)."""
    kw.setdefault("guided_skeleton", True)
    return SoTConfig(min_points=n, max_points=n, min_words=2, max_words=4, **kw)  # type: ignore[arg-type]


class RecordingEngine(EngineBase):
    """The real engine, plus a record of every request it was sent (to inspect prompts)."""

    def __init__(self, inner: VLLMEngine) -> None:
        self.inner = inner
        self.requests: list[GenerationRequest] = []

    model_name = property(lambda self: self.inner.model_name)
    max_model_len = property(lambda self: self.inner.max_model_len)

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

    def load(self):  # type: ignore[no-untyped-def]
        return self.inner.load()

    async def aclose(self) -> None:  # the session fixture owns the engine
        pass


class ListRetriever:
    """A fixed set of passages in place of an index: the pipeline only sees the Retriever protocol."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages
        self.queries: list[str] = []

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.queries.append(query)
        return self.passages[:k]


async def collect(pipeline: SoTPipeline, question: str = QUESTION, **kw: object) -> tuple[list, AnswerResult]:
    kw.setdefault("mode", "sot")  # the mode these tests are about (the default, auto, would ask a router)
    events = [event async for event in pipeline.stream(question, **kw)]  # type: ignore[arg-type]
    assert isinstance(events[-1], AnswerDone)
    return events, events[-1].result


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
    first_tokens = [p.first_token_s for p in result.points]
    ends = [p.end_s for p in result.points]
    assert None not in first_tokens and None not in ends
    assert max(first_tokens) < min(ends)  # type: ignore[type-var]

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


class OrderRecordingEngine(RecordingEngine):
    """Records, in order, each point prompt being encoded and each request being sent, with the event loop's
    iteration (``tick``) at the send."""

    def __init__(self, inner: VLLMEngine) -> None:
        super().__init__(inner)
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


async def test_points_reach_the_engine_together(engine: VLLMEngine) -> None:
    """Every point request is built before the first is sent, and all are sent in one turn of the event loop.
    On the GPU, points handed over one by one (each built, then sent) were prefilled in two engine steps, the
    first point alone: one extra prefill step (~35 ms, 7B) between the skeleton and the answer."""
    n = 4
    recording = OrderRecordingEngine(engine)
    ticker = asyncio.create_task(recording.count_loop_iterations())
    try:
        pipeline = SoTPipeline(recording, Settings(sampling=SAMPLING, sot=sot(n)))  # type: ignore[arg-type]
        _, result = await collect(pipeline)
    finally:
        ticker.cancel()
    assert result.mode == "sot" and len(result.points) == n
    point_log = [entry for entry in recording.log if entry[1] == "point" or "-point" in entry[1]]
    kinds = [kind for kind, _, _ in point_log]
    assert kinds == ["encode"] * n + ["send"] * n, point_log
    assert len({tick for kind, _, tick in point_log if kind == "send"}) == 1, point_log


async def test_normal_mode_streams_plain_text(engine: VLLMEngine) -> None:
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING))
    events, result = await collect(pipeline, mode="normal")
    assert result.mode == "normal" and result.points == [] and result.skeleton == ""
    streamed = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert streamed.strip() == result.answer
    assert result.stats.tokens > 0 and result.stats.skeleton_s is None


async def test_too_few_points_falls_back_to_normal(engine: VLLMEngine) -> None:
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(1, fallback_min_points=2)))
    events, result = await collect(pipeline)
    assert any(isinstance(e, FallbackEvent) for e in events)
    assert result.mode == "normal" and result.requested_mode == "sot"
    assert result.fallback_reason and "1 usable point" in result.fallback_reason
    assert result.skeleton  # the skeleton was written, then abandoned


async def test_eager_expansion_starts_points_during_the_skeleton(engine: VLLMEngine) -> None:
    pipeline = SoTPipeline(engine, Settings(sampling=SAMPLING, sot=sot(4, eager=True)))
    _, result = await collect(pipeline)
    assert result.stats.skeleton_s is not None
    # the skeleton starts at >= 0 s, so ending before skeleton_s means starting while it was written
    assert result.points[0].start_s < result.stats.skeleton_s
    assert len(result.points) == 4


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_cancelling_the_stream_aborts_every_request(engine: VLLMEngine, how: str) -> None:
    slow = SAMPLING.model_copy(update={"point_max_tokens": 400, "point_min_tokens": 400})
    pipeline = SoTPipeline(engine, Settings(sampling=slow, sot=sot(5)))
    seen_point = asyncio.Event()

    async def consume(stream: AsyncIterator[object]) -> None:
        async for event in stream:
            if isinstance(event, PointDelta):
                seen_point.set()
                if how == "aclose":
                    return

    stream = pipeline.stream(QUESTION, mode="sot")
    task = asyncio.create_task(consume(stream))
    await asyncio.wait_for(seen_point.wait(), timeout=120)
    assert engine.num_unfinished_requests() >= 1
    await asyncio.sleep(0.2)  # a few engine steps: vLLM's scheduler stats reach engine.load()
    assert engine.load().running >= 1
    if how == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await task
        await stream.aclose()  # type: ignore[attr-defined]
    assert engine.num_unfinished_requests() == 0


async def test_grounded_history_and_passages_are_in_every_prompt(engine: VLLMEngine) -> None:
    recorder = RecordingEngine(engine)
    passages = [
        Passage(text="Keep the bedroom cool and dark. " * 6, source="sleep/room.md", heading="Room", score=0.9),
        Passage(text="Avoid caffeine after noon. " * 6, source="sleep/food.md", heading="Food", score=0.8),
    ]
    retriever = ListRetriever(passages)
    pipeline = SoTPipeline(recorder, Settings(sampling=SAMPLING, sot=sot(3)), retriever=retriever)  # type: ignore[arg-type]
    history = [("How long should adults sleep?", "Seven to nine hours.")]
    events, result = await collect(pipeline, history=history, top_k=2)

    assert isinstance(events[0], SourcesEvent)
    assert [s.source for s in result.sources] == ["sleep/room.md", "sleep/food.md"]
    assert retriever.queries == [QUESTION]
    assert len(recorder.requests) == 1 + 3
    for request in recorder.requests:
        prompt = request.prompt
        assert (
            prompt.index('<passage n="1" source="sleep/room.md > Room">')
            < prompt.index("Seven to nine hours.")
            < prompt.index(QUESTION)
        )
    # the skeleton request's whole prompt is the start of every point prompt
    skeleton_prompt = recorder.requests[0].prompt
    assert all(r.prompt.startswith(skeleton_prompt) for r in recorder.requests[1:])
    shared = result.stats.prompt_tokens.skeleton // TEST_BLOCK_SIZE * TEST_BLOCK_SIZE
    assert all(p.cached_prompt_tokens >= shared for p in result.points)


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


async def test_passages_over_the_context_budget_are_dropped_in_order(engine: VLLMEngine) -> None:
    """Passages that would take more than ``context_share`` of the model's context are left out: the first ones
    that fit are kept, in order, and the answer says how many were dropped."""
    recorder = RecordingEngine(engine)
    budget = int(engine.max_model_len * 0.2)
    words = "sleep needs a cool dark quiet room and a fixed time "
    passages = [
        Passage(text=words * 3, source="short1.md", heading="S", score=0.9),
        Passage(text=words * (budget // 4), source="huge.md", heading="H", score=0.8),  # alone over the budget
        Passage(text=words * 3, source="short2.md", heading="S", score=0.7),
    ]
    assert engine.count_tokens(passages[1].text) > budget
    settings = Settings(sampling=SAMPLING, sot=sot(3), context_share=0.2)
    pipeline = SoTPipeline(recorder, settings, retriever=ListRetriever(passages))  # type: ignore[arg-type]
    _, result = await collect(pipeline, top_k=3)
    assert [s.source for s in result.sources] == ["short1.md", "short2.md"]
    assert [s.n for s in result.sources] == [1, 2]
    assert result.stats.passages_dropped == 1
    skeleton_prompt = recorder.requests[0].prompt
    assert 'source="short2.md' in skeleton_prompt and "huge.md" not in skeleton_prompt


async def test_question_longer_than_the_context_is_rejected_before_generation(engine: VLLMEngine) -> None:
    pipeline = SoTPipeline(engine)
    with pytest.raises(QuestionTooLong, match="2048 tokens"):
        await pipeline.validate("sleep " * 3000)
    with pytest.raises(ValueError, match="empty"):
        await collect(pipeline, question="   ")


class PerPointRetriever(ListRetriever):
    """The shared passages for the question itself, other passages for question + point queries."""

    def __init__(self, shared: list[Passage], extra: list[Passage]) -> None:
        super().__init__(shared)
        self.extra = extra

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.queries.append(query)
        return self.passages[:k] if query == QUESTION else [*self.passages, *self.extra][:k]


async def test_per_point_retrieval_appends_after_the_shared_prefix(engine: VLLMEngine) -> None:
    recorder = RecordingEngine(engine)
    shared = [Passage(text="Keep the bedroom cool. " * 8, source="room.md", chunk_id="c1", score=0.9)]
    extra = [
        Passage(text="Morning light sets the body clock.", source="light.md", chunk_id="c2", score=0.5),
        Passage(text="Exercise early in the day.", source="sport.md", chunk_id="c3", score=0.4),
    ]
    settings = Settings(sampling=SAMPLING, sot=sot(3), per_point_retrieval=True, per_point_k=2)
    pipeline = SoTPipeline(recorder, settings, retriever=PerPointRetriever(shared, extra))  # type: ignore[arg-type]
    _, result = await collect(pipeline, top_k=1)

    assert [(s.n, s.source) for s in result.sources] == [(1, "room.md"), (2, "light.md"), (3, "sport.md")]
    skeleton_prompt, *point_prompts = (r.prompt for r in recorder.requests)
    assert len(point_prompts) == 3
    for prompt in point_prompts:
        assert prompt.startswith(skeleton_prompt)
        tail = prompt[len(skeleton_prompt) :]
        assert '<passage n="2" source="light.md">' in tail and '<passage n="3" source="sport.md">' in tail
    shared_tokens = result.stats.prompt_tokens.skeleton // TEST_BLOCK_SIZE * TEST_BLOCK_SIZE
    assert all(p.cached_prompt_tokens >= shared_tokens for p in result.points)


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


async def test_stream_interval_coalesces_point_and_normal_deltas_not_the_skeleton(engine: VLLMEngine) -> None:
    """``sampling.stream_interval`` = 4: vLLM sends each point's and a normal answer's tokens 4 to a delta
    (fewer deltas for the event loop to handle), the skeleton still token by token (its lines are acted on as
    they end); no token is lost."""
    n, interval = 16, 4
    sampling = SAMPLING.model_copy(update={"point_max_tokens": n, "point_min_tokens": n, "normal_max_tokens": n,
                                           "normal_min_tokens": n, "stream_interval": interval})
    recording = DeltaRecordingEngine(engine)
    pipeline = SoTPipeline(recording, Settings(sampling=sampling, sot=sot(3)))  # type: ignore[arg-type]
    _, result = await collect(pipeline)
    _, normal = await collect(pipeline, mode="normal")
    assert result.mode == "sot" and [p.tokens for p in result.points] == [n] * 3 and normal.stats.tokens == n
    by_stage: dict[str, list[list[int]]] = {}
    for rid, sizes in recording.deltas.items():
        by_stage.setdefault(rid.rsplit("-", 1)[-1].rstrip("0123456789"), []).append([s for s in sizes if s])
    assert sorted(by_stage) == ["normal", "point", "skeleton"], recording.deltas
    assert all(max(sizes) == 1 for sizes in by_stage["skeleton"]), by_stage["skeleton"]
    for sizes in by_stage["point"] + by_stage["normal"]:
        # The first token comes at once, then deltas of `interval`, then the rest at the end.
        assert sum(sizes) == n and max(sizes) == interval and len(sizes) <= 2 + n // interval, sizes
    # Each request's options carry it: the points' and the normal answer's, not the skeleton's.
    intervals = {r.request_id.rsplit("-", 1)[-1].rstrip("0123456789"): r.sampling.stream_interval
                 for r in recording.requests}
    assert intervals == {"skeleton": 1, "point": interval, "normal": interval}
