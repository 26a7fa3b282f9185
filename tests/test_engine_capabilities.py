"""The optional engine and router capabilities are declared (``EngineBase``, ``Router``), with defaults, and an
engine that only satisfies the ``Engine`` protocol still gets them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sotrag.app.engines.base import (
    ChatPrompt,
    EngineBase,
    EngineHealth,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
    count_tokens_async,
    encode_chat_async,
    engine_health,
    with_defaults,
)
from sotrag.app.routing.base import RouteDecision, Router
from sotrag.prompts.messages import ChatMessage


class BareEngine:
    """Only the ``Engine`` protocol: no health, no async encoding, no request count, no servers."""

    @property
    def model_name(self) -> str:
        return "bare"

    @property
    def max_model_len(self) -> int:
        return 64

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return "|".join(m.content for m in messages)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        text = self.render_chat(messages)
        return ChatPrompt(text=text, token_ids=tuple(range(len(text))))

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        yield GenerationDelta("x", 1, 1, 0, "length")

    async def abort(self, request_id: str) -> None:
        return None

    def load(self) -> EngineLoad:
        return EngineLoad(running=0, waiting=0, max_num_seqs=1, kv_cache_usage=0.0)

    async def aclose(self) -> None:
        return None


class DeadEngine(BareEngine, EngineBase):
    """Overrides what it knows: it is dead, and it holds two requests."""

    async def health(self) -> bool:
        return False

    def num_unfinished_requests(self) -> int:
        return 2


class BrokenHealth(BareEngine, EngineBase):
    def health(self) -> EngineHealth:
        raise RuntimeError("engine core gone")


async def test_a_protocol_only_engine_gets_the_defaults() -> None:
    bare = BareEngine()
    messages = [ChatMessage("user", "two words")]
    assert await engine_health(bare) == EngineHealth(alive=True)
    assert await encode_chat_async(bare, messages) == bare.encode_chat(messages)
    assert await count_tokens_async(bare, "two words") == 2
    capable = with_defaults(bare)
    assert capable.num_unfinished_requests() is None and capable.servers() is None
    assert capable.model_name == "bare"
    assert [d.text async for d in capable.generate(GenerationRequest("r", "p"))] == ["x"]


async def test_an_engine_base_override_is_used_and_a_broken_health_check_reads_as_dead() -> None:
    dead = DeadEngine()
    assert with_defaults(dead) is dead
    assert await engine_health(dead) == EngineHealth(alive=False, detail="the engine reports it is not healthy")
    assert dead.num_unfinished_requests() == 2
    broken = await engine_health(BrokenHealth())
    assert not broken.alive and broken.detail == "the engine does not answer its health check"


def test_a_router_that_inherits_the_protocol_gets_no_op_defaults() -> None:
    class Always(Router):
        def route(self, question: str, load: EngineLoad | None) -> RouteDecision:
            return RouteDecision("sot", "always")

    router = Always()
    router.watch_loop()
    router.warm_up()
    assert router.refusing() is None and router.loop_lag_s() is None
    assert router.route("q", None).mode == "sot"
