"""A Hugging Face tokenizer in this process, as both engines use it to make prompt ids.

``VLLMEngine`` gets its tokenizer from vLLM; ``RemoteEngine`` loads a local copy of the served model's tokenizer
when one is on disk (``load_local_tokenizer``) and encodes as the server would. Either way the prompt ids are made
the same way, by ``LocalTokenizer``: ``chat_ids.encode_chat`` with one content cache and one template cache per
engine, shared by every request of every answer (one answer encodes the same contents again and again).

On the event loop (``aencode_chat``, ``acount_tokens``) a long content the cache has not seen, an answer's
retrieved passages, is encoded in a worker thread first (``TokenizeWorker``): encoding it takes milliseconds,
during which every other answer's stream would wait (docs/BENCHMARKS.md, the start of an answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import ChatPrompt
from sotrag.prompts.messages import ChatMessage

log = logging.getLogger("sotrag.engine")

OFF_LOOP_CHARS = 2000  # a content at least this long, not cached yet, is encoded in the worker thread


class TokenizeWorker:
    """One thread that encodes plain text with its own copy of the Rust tokenizer behind a Hugging Face one.

    Why a copy: transformers sets the shared tokenizer's ``encode_special_tokens`` flag on every call (from
    ``split_special_tokens``), so a content encode in a thread could race a chat-template encode on the loop and
    make a role marker plain text, or a marker in a document a special token. Why ``encode_batch``: it is the
    call that releases the GIL. The copy is checked at start against ``expected`` (the HF tokenizer's plain
    encoding of ``probe``); where it differs, or the tokenizer has no Rust backend, ``encode`` returns None and
    the caller encodes in place."""

    def __init__(self, tokenizer: Any, probe: str, expected: Sequence[int]) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sotrag-tokenize")
        self._copy: Future[Any] = self._pool.submit(self._make_copy, tokenizer, probe, tuple(expected))

    @staticmethod
    def _make_copy(tokenizer: Any, probe: str, expected: tuple[int, ...]) -> Any:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(backend.to_str())
        copy.encode_special_tokens = True  # plain text: a special token's string stays text
        copy.no_truncation()
        copy.no_padding()
        if tuple(copy.encode_batch([probe], add_special_tokens=False)[0].ids) != expected:
            log.warning("the tokenizer's Rust copy encodes differently; long prompts are encoded on the event loop")
            return None
        return copy

    def _encode(self, text: str) -> list[int] | None:
        copy = self._copy.result()
        return None if copy is None else list(copy.encode_batch([text], add_special_tokens=False)[0].ids)

    async def encode(self, text: str) -> list[int] | None:
        """``text`` as plain-text ids, made in the worker thread; None where there is no usable copy."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._encode, text)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class LocalTokenizer:
    """Chat prompts and plain-text ids from a Hugging Face ``tokenizer``, with the engine's encoding caches.

    ``plain`` (content as plain text) and ``template`` (the chat template's pieces) are the caches; both are
    attributes so a benchmark can swap one for an uncached encoder to measure what it saves."""

    def __init__(self, tokenizer: Any, *, off_loop_chars: int = OFF_LOOP_CHARS) -> None:
        self.tokenizer = tokenizer
        self.special_ids = chat_ids.special_token_ids(tokenizer)
        self.plain: Callable[[str], Sequence[int]] = chat_ids.PlainEncoder(tokenizer)
        self.template: Callable[[str], Sequence[int]] = chat_ids.TemplateEncoder(tokenizer)
        self.off_loop_chars = off_loop_chars
        self.worker: TokenizeWorker | None = None
        if off_loop_chars > 0:
            specials = [str(t) for t in getattr(tokenizer, "all_special_tokens", ()) or ()]
            probe = "Plain text, 1.5 [1]: </passage> " + " ".join(specials) + " <|im_start|>user\n done"
            self.worker = TokenizeWorker(tokenizer, probe, chat_ids.encode_plain(tokenizer, probe))

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return chat_ids.render_chat(self.tokenizer, messages, continue_final_message=continue_final_message)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        return chat_ids.encode_chat(
            self.tokenizer, messages, continue_final_message=continue_final_message, plain=self.plain,
            template=self.template,
        )

    def plain_ids(self, text: str) -> list[int]:
        """``text`` as plain text (cached)."""
        return list(self.plain(text))

    def count_tokens(self, text: str) -> int:
        return len(self.plain(text))

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        """``encode_chat``, its long new contents encoded off the event loop first (see the module doc)."""
        await self._encode_long([m.content for m in messages])
        return self.encode_chat(messages, continue_final_message=continue_final_message)

    async def acount_tokens(self, text: str) -> int:
        await self._encode_long([text])
        return self.count_tokens(text)

    async def _encode_long(self, texts: Sequence[str]) -> None:
        """Encode in the worker, into the content cache, each text long enough and not cached yet; the in-place
        call that follows then finds it. Nothing to do without a worker or with a benchmark's own encoder."""
        plain = self.plain
        if self.worker is None or not isinstance(plain, chat_ids.PlainEncoder):
            return
        for text in dict.fromkeys(texts):
            if len(text) >= self.off_loop_chars and not plain.cached(text):
                ids = await self.worker.encode(text)
                if ids is None:
                    return
                plain.remember(text, ids)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def load_local_tokenizer(name: str) -> tuple[Any, str | None]:
    """A Hugging Face tokenizer for ``name`` from a local folder or the local hub cache (never downloaded),
    or None and why not."""
    if not name:
        return None, "no model or tokenizer named"
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True), None
    except Exception as exc:
        return None, f"{name} is not a local tokenizer ({type(exc).__name__})"
