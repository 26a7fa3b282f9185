"""Optional: the served model classifies the question itself (the SoT paper's prompting router)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from sotrag.app.engines.base import GenerationRequest, SamplingOptions, encode_chat_async
from sotrag.app.routing.base import QuestionClassifier
from sotrag.prompts.router import router_messages

if TYPE_CHECKING:
    from sotrag.app.engines.base import Engine

class LLMRouter(QuestionClassifier):
    """Ask the engine's model which of three kinds a question is (the SoT paper's prompting router idea).

    ``A`` (independent points) suits SoT; ``B`` (points that build on each other) and ``C`` (no list at
    all) do not. The answer is constrained to one letter by a regex. Only worth it with a capable model;
    the trained router stays the default.

    ``probability`` is synchronous (the pipeline calls routers from a worker thread): it submits the
    request to the event loop the engine runs on, captured when the router is made inside that loop.
    """

    name = "router(llm)"
    threshold = 0.5

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop | None = None, timeout_s: float = 60.0):
        self.engine = engine
        self.timeout_s = timeout_s
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self.loop = loop
        self._n = 0

    async def aclassify(self, question: str) -> Literal["A", "B", "C"]:

        self._n += 1
        prompt = await encode_chat_async(self.engine, router_messages(question))  # the question stays plain text
        request = GenerationRequest(
            request_id=f"router-{id(self):x}-{self._n}",
            prompt=prompt.text,
            sampling=SamplingOptions(max_tokens=2, temperature=0.0, regex="[ABC]"),
            prompt_token_ids=prompt.token_ids,
        )
        text = ""
        async for delta in self.engine.generate(request):
            text += delta.text
        letter = text.strip()[:1].upper()
        return letter if letter in ("A", "B", "C") else "C"  # type: ignore[return-value]

    async def aprobability(self, question: str) -> float:
        return 1.0 if await self.aclassify(question) == "A" else 0.0

    def probability(self, question: str) -> float:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("LLMRouter.probability blocks: inside the event loop await aprobability()")
        if self.loop is None:
            raise RuntimeError("LLMRouter needs the engine's event loop: create it inside that loop")
        future = asyncio.run_coroutine_threadsafe(self.aprobability(question), self.loop)
        return future.result(timeout=self.timeout_s)

