"""The remote engine: the ``Engine`` interface over one or more running vLLM OpenAI servers (``vllm serve``).

Two halves with one job each: ``RemoteTransport`` (``remote_transport``) talks HTTP to the servers (probing them,
streaming completions, aborts, load), and ``RemoteTokens`` (``remote_tokens``) makes the prompt ids, by a local
copy of the served model's tokenizer or through the servers' ``/tokenize`` (``ServerTokenizer``). ``RemoteEngine``
joins them: the tokens half encodes, the transport half sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence

from sotrag.app.config import EngineConfig
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    EngineBase,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.app.engines.remote_tokens import RemoteTokens
from sotrag.app.engines.remote_transport import RemoteTransport
from sotrag.app.engines.server_tokenizer import ServerTokenizer

__all__ = ["RemoteEngine", "ServerTokenizer"]


class RemoteEngine(EngineBase):
    """The engine over vLLM OpenAI servers. Use ``await RemoteEngine.create(config)`` inside the event loop.

    ``transport`` and ``tokens`` are its two halves (see the module doc)."""

    def __init__(self, config: EngineConfig) -> None:
        self.transport = RemoteTransport(config)
        self.tokens = RemoteTokens(self.transport)

    @classmethod
    async def create(cls, config: EngineConfig) -> RemoteEngine:
        engine = cls(config)
        try:
            await engine.transport.start()
            await engine.tokens.choose()
        except BaseException:
            await engine.aclose()
            raise
        return engine

    @property
    def model_name(self) -> str:
        return self.transport.model or ""

    @property
    def max_model_len(self) -> int:
        return self.transport.max_model_len

    @property
    def tokenizer_source(self) -> str:
        """Where prompt ids are made: ``local`` (a local tokenizer that matches the servers') or ``server``."""
        return self.tokens.source

    # -- prompts: the tokens half -----------------------------------------------------------------------

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return self.tokens.render_chat(messages, continue_final_message=continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        return self.tokens.encode_chat(messages, continue_final_message=continue_final_message)

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        return await self.tokens.aencode_chat(messages, continue_final_message=continue_final_message)

    def count_tokens(self, text: str) -> int:
        return self.tokens.count_tokens(text)

    async def acount_tokens(self, text: str) -> int:
        return await self.tokens.acount_tokens(text)

    # -- requests: the transport half -------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if request.prompt_token_ids is None:  # bare text is plain text: no special token comes out of it
            ids = await asyncio.to_thread(self.tokens.plain_ids, request.prompt)
            request = dataclasses.replace(request, prompt_token_ids=tuple(ids))
        # Closed early (cancel, client gone), the transport's stream closes now, not when collected: that aborts it.
        async with contextlib.aclosing(self.transport.generate(request, self.tokens.special_ids)) as deltas:
            async for delta in deltas:
                yield delta

    async def abort(self, request_id: str) -> None:
        """Close the request's stream: vLLM aborts a request whose client went away."""
        await self.transport.abort(request_id)

    def num_unfinished_requests(self) -> int:
        """Requests this process holds open on the servers."""
        return len(self.transport.open_streams)

    def load(self) -> EngineLoad:
        return self.transport.load()

    def servers(self) -> list[dict[str, object]]:
        """Each server: up or down (with why) and its last load; for ``/readyz``. (No ``health()``: servers that
        are down come back, so the pool never reports itself dead and the process is not restarted for it.)"""
        return self.transport.servers()

    async def aclose(self) -> None:
        if self.tokens.local is not None:
            self.tokens.local.close()
        await self.transport.aclose()
