"""A Hugging Face tokenizer in this process, as both engines use it to make prompt ids.

``VLLMEngine`` gets its tokenizer from vLLM; ``RemoteEngine`` loads a local copy of the served model's tokenizer
when one is on disk (``load_local_tokenizer``) and encodes as the server would. Either way the prompt ids are made
the same way, by ``LocalTokenizer``: ``chat_ids.encode_chat`` with one content cache and one template cache per
engine, shared by every request of every answer (one answer encodes the same contents again and again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import ChatPrompt
from sotrag.prompts.messages import ChatMessage


class LocalTokenizer:
    """Chat prompts and plain-text ids from a Hugging Face ``tokenizer``, with the engine's encoding caches.

    ``plain`` (content as plain text) and ``template`` (the chat template's pieces) are the caches; both are
    attributes so a benchmark can swap one for an uncached encoder to measure what it saves."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special_ids = chat_ids.special_token_ids(tokenizer)
        self.plain: Callable[[str], Sequence[int]] = chat_ids.PlainEncoder(tokenizer)
        self.template: Callable[[str], Sequence[int]] = chat_ids.TemplateEncoder(tokenizer)

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
