"""The remote engine's prompt ids: made by a local copy of the served model's tokenizer, or by the server.

Prompt ids (``encode_chat``) carry the in-process engine's guarantees: only the chat template makes special
tokens (a role marker in a document, a question or a history turn stays text), and each message's content
has its span, so points continue from the skeleton request's own ids (prefix cache). With a local copy of
the served model's tokenizer (``engine.tokenizer`` or ``engine.model``, loaded offline, and checked at start
to encode a probe chat exactly as the server) ``LocalTokenizer`` builds them, as for the in-process engine.
Otherwise the server does: its template rendered around sentinels (``/tokenize`` with messages, then
``/detokenize``), the template's pieces encoded by ``/tokenize``, each content by ``ServerTokenizer.plain_ids``
(see its doc for how complete that is). Bare-text prompts are encoded as plain text too.

``encode_chat``, ``render_chat`` and ``count_tokens`` are synchronous in the ``Engine`` interface; through
the server they are blocking HTTP calls, cached (template per role sequence, pieces and contents per text):
a new prompt costs one ``/tokenize`` per new content, more where it holds special-token strings. The serving
path calls ``aencode_chat`` / ``acount_tokens`` instead (``engines.base.encode_chat_async``), which run those
calls in a worker thread, one at a time (a lock guards the server tokenizer's caches), so no answer stalls
the event loop for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Collection, Sequence
from typing import Any

from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import ChatMessage, ChatPrompt, EngineError
from sotrag.app.engines.local_tokenizer import LocalTokenizer, load_local_tokenizer
from sotrag.app.engines.lru import LRU
from sotrag.app.engines.remote_transport import RemoteTransport
from sotrag.app.engines.server_tokenizer import CACHE_MAX, ServerTokenizer

log = logging.getLogger("sotrag.engine.remote")


class RemoteTokens:
    """Prompt ids and token counts for the remote engine: by the local tokenizer when one matches the servers'
    (``choose`` decides, once the servers are up), else through the servers (``ServerTokenizer``)."""

    def __init__(self, transport: RemoteTransport) -> None:
        self._transport = transport
        self._config = transport.config
        self._rendered = LRU(CACHE_MAX)  # (role/sentinel pairs, continue) -> the server's template as text
        self._counts = LRU(CACHE_MAX)  # text -> token count
        self._nonce = secrets.token_hex(8)  # sentinels for content while the server renders the template
        self.local: LocalTokenizer | None = None  # a local tokenizer that matches the servers', if there is one
        self.server = ServerTokenizer(transport.call_sync, lambda: transport.model)
        self._server_lock = threading.RLock()

    @property
    def source(self) -> str:
        """Where prompt ids are made: ``local`` (a local tokenizer that matches the servers') or ``server``."""
        return "local" if self.local is not None else "server"

    def special_ids(self) -> Collection[int]:
        """The special token ids known now (the server's grow as its tokenizer learns them)."""
        return self.local.special_ids if self.local is not None else self.server.special_ids

    async def choose(self) -> None:
        """A local tokenizer of the served model, if one loads offline and encodes as the server does; else
        the server's ``/tokenize`` (then its special tokens are learnt now)."""
        if self._config.remote_tokenizer == "auto":
            name = self._config.tokenizer or self._transport.model or ""
            local, why = await asyncio.to_thread(load_local_tokenizer, name)
            if local is not None:
                why = await asyncio.to_thread(self._local_mismatch, local)
            if why is None:
                self.local = LocalTokenizer(local)
                log.info("remote engine: prompt ids from the local tokenizer %s (it matches the server's)", name)
                return
            log.info("remote engine: prompt ids through the server's /tokenize: no usable local tokenizer (%s)", why)
        transport = self._transport
        markers = await asyncio.to_thread(lambda: self.server.learn(transport.tokenizer_info(), self._probe_templates))
        log.info("remote engine: special-token strings kept out of content: %s", ", ".join(markers) or "none")

    def _local_mismatch(self, local: Any) -> str | None:
        """Why ``local`` does not encode as the server does (None: it does), checked on a probe chat that has
        special tokens, plain text and non-ASCII text in it."""
        messages = [
            ChatMessage("user", "Probe: Hé, 1 2  3\n\tdone. 日本"), ChatMessage("assistant", "ok"),
            ChatMessage("user", "next?"),
        ]
        try:
            text = chat_ids.render_chat(local, messages)
            mine = chat_ids.encode_template(local, text)
        except Exception as exc:  # a tokenizer without a chat template, or one the template rejects
            return f"its chat template failed: {type(exc).__name__}"
        body = {
            "model": self._transport.model, "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": True, "add_special_tokens": False,
        }
        try:
            theirs = list(self._transport.call_sync("/tokenize", body)["tokens"])
        except EngineError as exc:
            return f"the server could not render the probe chat: {exc}"
        if mine != theirs:
            return "its chat template or vocabulary differs from the server's"
        plain = "Plain text, 42 ünïcode"
        if chat_ids.encode_plain(local, plain) != self.server.tokenize(plain):
            return "it encodes text differently from the server"
        return None

    def _probe_templates(self) -> list[str]:
        """The server's chat template around sentinel contents, for the roles and modes sotrag sends."""
        roles = [
            [("system", "s"), ("user", "u")],
            [("system", "s"), ("user", "u"), ("assistant", "a"), ("user", "v")],
            [("system", "s"), ("user", "u"), ("assistant", "a")],
        ]
        rendered = []
        for pairs, cont in ((roles[0], False), (roles[1], False), (roles[2], True)):
            with contextlib.suppress(EngineError):  # e.g. a template without a system role
                rendered.append(self._render_pairs([(r, f"<<sotrag-{self._nonce}-{c}>>") for r, c in pairs], cont))
        return rendered

    # -- the Engine's tokenizing half ------------------------------------------------------------------

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        """The chat template applied as text (for logs; requests use ``encode_chat``)."""
        return self.encode_chat(messages, continue_final_message=continue_final_message).text

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        """Ids in which only the chat template makes special tokens, with content spans (see the module doc):
        by the local tokenizer when one matches the server, else through the server (``ServerTokenizer``)."""
        if self.local is not None:
            return self.local.encode_chat(messages, continue_final_message=continue_final_message)
        with self._server_lock:  # its caches are shared by the loop's worker threads
            return chat_ids.encode_chat_with(
                self._render_pairs, self.server.template_ids, self.server.plain_ids, messages,
                continue_final_message=continue_final_message, nonce=self._nonce,
            )

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        """``encode_chat`` for the event loop: through the server it makes blocking round trips (``/tokenize``),
        so it runs in a worker thread then; the local tokenizer encodes long new contents in its own worker."""
        if self.local is not None:
            return await self.local.aencode_chat(messages, continue_final_message=continue_final_message)
        return await asyncio.to_thread(self.encode_chat, messages, continue_final_message=continue_final_message)

    async def acount_tokens(self, text: str) -> int:
        """``count_tokens`` for the event loop (a worker thread when it would ask the server)."""
        if self.local is not None:
            return await self.local.acount_tokens(text)
        return await asyncio.to_thread(self.count_tokens, text)

    def _render_pairs(self, pairs: list[tuple[str, str]], continue_final_message: bool) -> str:
        """The server's chat template applied to (role, content) pairs, as text (cached: the contents here are
        sentinels, so the roles are the key)."""
        key = (tuple(pairs), continue_final_message)
        cached = self._rendered.get_fresh(key)
        if cached is not None:
            return str(cached)
        body = {
            "model": self._transport.model,
            "messages": [{"role": r, "content": c} for r, c in pairs],
            "add_generation_prompt": not continue_final_message,
            "continue_final_message": continue_final_message,
            "add_special_tokens": False,
        }
        ids = list(self._transport.call_sync("/tokenize", body)["tokens"])
        detokenized = self._transport.call_sync("/detokenize", {"model": self._transport.model, "tokens": ids})
        text = str(detokenized["prompt"])
        self._rendered.put(key, text)
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as plain text, as message content is encoded."""
        cached = self._counts.get_fresh(text)
        if cached is not None:
            return int(cached)
        count = len(self.plain_ids(text))
        self._counts.put(text, count)
        return count

    def plain_ids(self, text: str) -> list[int]:
        """``text`` as plain text (a bare-text prompt, a count)."""
        if self.local is not None:
            return self.local.plain_ids(text)
        with self._server_lock:
            return self.server.plain_ids(text)
