"""The remote engine: the ``Engine`` interface over one or more running vLLM OpenAI servers (``vllm serve``).

Why the completions API and not chat completions: SoT's point requests continue an open assistant turn and
may continue from token ids (``GenerationRequest.prompt_token_ids``); ``/v1/completions`` takes a token-id
prompt and, with ``return_token_ids``, streams the generated ids back.

Prompt ids (``encode_chat``) carry the in-process engine's guarantees: only the chat template makes special
tokens (a role marker in a document, a question or a history turn stays text), and each message's content
has its span, so points continue from the skeleton request's own ids (prefix cache). With a local copy of
the served model's tokenizer (``engine.tokenizer`` or ``engine.model``, loaded offline, and checked at start
to encode a probe chat exactly as the server) ``chat_ids.encode_chat`` builds them. Otherwise the server
does: its template rendered around sentinels (``/tokenize`` with messages, then ``/detokenize``), the
template's pieces encoded by ``/tokenize``, each content by ``ServerTokenizer.plain_ids`` (see its doc for
how complete that is). Bare-text prompts are encoded as plain text too.

Streams: each request is one streamed HTTP response; closing it (the pipeline closes the generator on cancel)
closes the connection, and vLLM aborts a request whose client is gone. Token counts come from the streamed
``usage`` (``continuous_usage_stats``), cached prompt tokens from ``usage.prompt_tokens_details`` where the
server reports them (``--enable-prompt-tokens-details``). Only connection errors are retried (with backoff):
a request that reached a server is never sent twice.

Without ``/tokenize`` the engine refuses to start (it cannot know the chat template). Without
``return_token_ids`` (older servers) deltas carry no token ids and token-id prompts cannot be continued from
generated ids; ``supports_token_ids`` says so. Without prompt-token details, ``cached_prompt_tokens`` is 0.

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
import dataclasses
import json
import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from sotrag.app.config import EngineConfig
from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import (
    ChatMessage,
    ChatPrompt,
    EngineError,
    EngineLoad,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.app.engines.lru import LRU
from sotrag.app.engines.remote_pool import Server, ServerPool, describe_http_error

log = logging.getLogger("sotrag.engine.remote")

BACKOFF_S = 0.25  # first retry after this, then doubling
# Connection-level failures: before the server answered, nothing was generated, so they are retried; after,
# the stream was cut mid-answer.
_TRANSPORT_ERRORS = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError
)
KEEPALIVE_S = 2.0  # idle connections to a server are closed after this (under its own keep-alive)
SERVER_STOPS = 4  # vLLM's server takes at most VLLM_MAX_STOP_STRINGS (4 by default) stop strings
_CACHE_MAX = 2048


class RemoteEngine:
    """The engine over vLLM OpenAI servers. Use ``await RemoteEngine.create(config)`` inside the event loop."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s)
        # Idle connections are dropped before the server's keep-alive ends (vLLM's uvicorn: 5 s, as httpx's
        # default): else a request can go out on a connection the server is closing at that moment, and fail
        # with "Server disconnected without sending a response".
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_S)
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits)
        # encode_chat / count_tokens are synchronous in the Engine interface: a small blocking client, used from
        # worker threads on the serving path (aencode_chat / acount_tokens), so it never stalls the event loop.
        self._sync = httpx.Client(
            headers=headers, timeout=httpx.Timeout(30.0, connect=config.connect_timeout_s),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )
        self._pool = ServerPool(config.urls, self._client, poll_interval_s=config.poll_interval_s, probe=self._probe)
        self._model: str | None = config.model
        self._max_model_len = 0
        self._open: dict[str, httpx.Response] = {}
        self._aborted: set[str] = set()
        self._rendered = LRU(_CACHE_MAX)  # (role/sentinel pairs, continue) -> the server's template as text
        self._counts = LRU(_CACHE_MAX)  # text -> token count
        self._nonce = secrets.token_hex(8)  # sentinels for content while the server renders the template
        self._local: Any = None  # a local Hugging Face tokenizer that matches the servers', if there is one
        self._local_plain: chat_ids.PlainEncoder | None = None  # its encoder of contents, shared by requests
        self._local_template: chat_ids.TemplateEncoder | None = None  # and of the chat template's pieces
        self._local_special: frozenset[int] = frozenset()
        self._server_tok = ServerTokenizer(self._call_sync, lambda: self._model)
        self._server_tok_lock = threading.RLock()

    @classmethod
    async def create(cls, config: EngineConfig) -> RemoteEngine:
        engine = cls(config)
        try:
            await engine._pool.start()
            if not engine._pool.healthy():
                servers = engine._pool.servers
                if len(servers) == 1:
                    s = servers[0]
                    known = s.url in s.reason  # the probe's own errors name the server
                    raise EngineError(s.reason if known else f"cannot reach the vLLM server {s.url}: {s.reason}")
                raise EngineError(f"no vLLM server is usable: {engine._pool.down_summary()}")
            await engine._choose_tokenizer()
        except BaseException:
            await engine.aclose()
            raise
        return engine

    async def _choose_tokenizer(self) -> None:
        """A local tokenizer of the served model, if one loads offline and encodes as the server does; else
        the server's ``/tokenize`` (then its special tokens are learnt now)."""
        if self._config.remote_tokenizer == "auto":
            name = self._config.tokenizer or self._model or ""
            local, why = await asyncio.to_thread(_load_local_tokenizer, name)
            if local is not None:
                why = await asyncio.to_thread(self._local_mismatch, local)
            if why is None:
                self._local, self._local_special = local, chat_ids.special_token_ids(local)
                self._local_plain = chat_ids.PlainEncoder(local)
                self._local_template = chat_ids.TemplateEncoder(local)
                log.info("remote engine: prompt ids from the local tokenizer %s (it matches the server's)", name)
                return
            log.info("remote engine: prompt ids through the server's /tokenize: no usable local tokenizer (%s)", why)
        markers = await asyncio.to_thread(lambda: self._server_tok.learn(self._tokenizer_info(), self._probe_templates))
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
            "model": self._model, "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": True, "add_special_tokens": False,
        }
        try:
            theirs = list(self._call_sync("/tokenize", body)["tokens"])
        except EngineError as exc:
            return f"the server could not render the probe chat: {exc}"
        if mine != theirs:
            return "its chat template or vocabulary differs from the server's"
        plain = "Plain text, 42 ünïcode"
        if chat_ids.encode_plain(local, plain) != self._server_tok.tokenize(plain):
            return "it encodes text differently from the server"
        return None

    def _tokenizer_info(self) -> dict[str, Any] | None:
        """The server's tokenizer config (``--enable-tokenizer-info-endpoint``), if it shares it."""
        for server in self._pool.healthy():
            try:
                resp = self._sync.get(f"{server.root}/tokenizer_info")
            except httpx.HTTPError:
                continue
            if resp.status_code == 200:
                return dict(resp.json())
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

    # -- checking a server ------------------------------------------------------------------------------

    async def _probe(self, server: Server) -> None:
        """Models, context length and features of a server that just came up; ``EngineError`` if unusable."""
        models = await self._get_json(server, f"{server.api_base}/models")
        entries = {m.get("id"): m for m in models.get("data", []) if isinstance(m, dict)}
        names = ", ".join(sorted(str(n) for n in entries)) or "none"
        if self._model is None:
            if len(entries) != 1:
                raise EngineError(
                    f"the vLLM server {server.url} serves several models ({names}): name one with --model"
                )
            self._model = str(next(iter(entries)))
        if self._model not in entries:
            raise EngineError(f"the vLLM server {server.url} has no model {self._model!r}; it serves: {names}")
        # The server's context length is the truth (engine.max_model_len is for an in-process engine).
        length = int(entries[self._model].get("max_model_len") or self._config.max_model_len or 0)
        self._max_model_len = min(self._max_model_len, length) if self._max_model_len else length

        tokenized = await self._post_json(
            server, f"{server.root}/tokenize", {"model": self._model, "prompt": "1", "add_special_tokens": False},
            missing=f"the vLLM server {server.url} has no /tokenize route, which sotrag needs to use the "
            "server's chat template (is it a vLLM server?)",
        )
        await self._post_json(
            server, f"{server.root}/detokenize", {"model": self._model, "tokens": tokenized["tokens"]},
            missing=f"the vLLM server {server.url} has no /detokenize route, which sotrag needs",
        )
        features = {}
        probe = {"model": self._model, "prompt": tokenized["tokens"], "max_tokens": 4, "temperature": 0.0}
        out = await self._post_json(
            server, f"{server.api_base}/completions",
            {**probe, "return_token_ids": True, "structured_outputs": {"regex": "1"}},
        )
        choice = out["choices"][0]
        features["token_ids"] = isinstance(choice.get("token_ids"), list)
        features["prompt_tokens_details"] = bool((out.get("usage") or {}).get("prompt_tokens_details"))
        features["structured_outputs"] = choice.get("text") == "1"
        if not features["structured_outputs"]:  # vLLM before structured_outputs took guided_regex
            old = await self._post_json(server, f"{server.api_base}/completions", {**probe, "guided_regex": "1"})
            features["guided_regex"] = old["choices"][0].get("text") == "1"
        server.features = features
        if not features["token_ids"]:
            log.warning("vLLM server %s does not return token ids: token-id continuation is off", server.url)
        if not features["prompt_tokens_details"]:
            log.warning(
                "vLLM server %s reports no cached prompt tokens (start it with --enable-prompt-tokens-details)",
                server.url,
            )

    async def _get_json(self, server: Server, url: str) -> dict[str, Any]:
        resp = await self._client.get(url, timeout=httpx.Timeout(10.0, connect=self._config.connect_timeout_s))
        if resp.status_code != 200:
            raise EngineError(_status_error(server, resp))
        return dict(resp.json())

    async def _post_json(
        self, server: Server, url: str, body: dict[str, Any], *, missing: str | None = None
    ) -> dict[str, Any]:
        timeout = httpx.Timeout(60.0, connect=self._config.connect_timeout_s)
        resp = await self._client.post(url, json=body, timeout=timeout)
        if resp.status_code == 404 and missing:
            raise EngineError(missing)
        if resp.status_code != 200:
            raise EngineError(_status_error(server, resp))
        return dict(resp.json())

    # -- Engine interface -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model or ""

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def tokenizer_source(self) -> str:
        """Where prompt ids are made: ``local`` (a local tokenizer that matches the servers') or ``server``."""
        return "local" if self._local is not None else "server"

    @property
    def supports_token_ids(self) -> bool:
        """Every healthy server returns generated token ids (``return_token_ids``)."""
        up = self._pool.healthy()
        return bool(up) and all(s.features.get("token_ids") for s in up)

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        """The chat template applied as text (for logs; requests use ``encode_chat``)."""
        return self.encode_chat(messages, continue_final_message=continue_final_message).text

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        """Ids in which only the chat template makes special tokens, with content spans (see the module doc):
        by the local tokenizer when one matches the server, else through the server (``ServerTokenizer``)."""
        if self._local is not None:
            return chat_ids.encode_chat(
                self._local, messages, continue_final_message=continue_final_message, plain=self._local_plain,
                template=self._local_template,
            )
        with self._server_tok_lock:  # its caches are shared by the loop's worker threads
            return chat_ids.encode_chat_with(
                self._render_pairs, self._server_tok.template_ids, self._server_tok.plain_ids, messages,
                continue_final_message=continue_final_message, nonce=self._nonce,
            )

    async def aencode_chat(
        self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False
    ) -> ChatPrompt:
        """``encode_chat`` for the event loop: through the server it makes blocking round trips (``/tokenize``),
        so it runs in a worker thread then; the local tokenizer runs in place (CPU only, no I/O)."""
        if self._local is not None:
            return self.encode_chat(messages, continue_final_message=continue_final_message)
        return await asyncio.to_thread(self.encode_chat, messages, continue_final_message=continue_final_message)

    async def acount_tokens(self, text: str) -> int:
        """``count_tokens`` for the event loop (a worker thread when it would ask the server)."""
        if self._local is not None:
            return self.count_tokens(text)
        return await asyncio.to_thread(self.count_tokens, text)

    def _render_pairs(self, pairs: list[tuple[str, str]], continue_final_message: bool) -> str:
        """The server's chat template applied to (role, content) pairs, as text (cached: the contents here are
        sentinels, so the roles are the key)."""
        key = (tuple(pairs), continue_final_message)
        cached = self._rendered.get_fresh(key)
        if cached is not None:
            return str(cached)
        body = {
            "model": self._model,
            "messages": [{"role": r, "content": c} for r, c in pairs],
            "add_generation_prompt": not continue_final_message,
            "continue_final_message": continue_final_message,
            "add_special_tokens": False,
        }
        ids = list(self._call_sync("/tokenize", body)["tokens"])
        text = str(self._call_sync("/detokenize", {"model": self._model, "tokens": ids})["prompt"])
        self._rendered.put(key, text)
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as plain text, as message content is encoded."""
        cached = self._counts.get_fresh(text)
        if cached is not None:
            return int(cached)
        count = len(self._plain(text))
        self._counts.put(text, count)
        return count

    def _plain(self, text: str) -> list[int]:
        if self._local_plain is not None:
            return list(self._local_plain(text))
        with self._server_tok_lock:
            return self._server_tok.plain_ids(text)

    def _call_sync(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to a healthy server's ``route`` (any server: they share model and template)."""
        errors = []
        for server in sorted(self._pool.healthy(), key=Server.score) or self._pool.servers:
            try:
                resp = self._sync.post(f"{server.root}{route}", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{server.url} ({describe_http_error(exc)})")
                self._pool.mark_down(server, describe_http_error(exc))
                self._pool.recheck_soon()
                continue
            if resp.status_code != 200:
                raise EngineError(_status_error(server, resp))
            return dict(resp.json())
        raise EngineError(f"no vLLM server could {route.strip('/')}: {'; '.join(errors)}")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        if request.prompt_token_ids is None:  # bare text is plain text: no special token comes out of it
            ids = await asyncio.to_thread(self._plain, request.prompt)
            request = dataclasses.replace(request, prompt_token_ids=tuple(ids))
        body = self._body(request)
        retries = self._config.connect_retries
        server = self._pool.pick(request.affinity)
        try:  # the pick counts as load on the server until the request ends, whichever way
            attempt = 0
            while True:
                answered = False  # the server sent a response (until then, nothing was generated: a retry is safe)
                try:
                    async with self._client.stream(
                        "POST", f"{server.api_base}/completions", json=body, headers=self._headers(request)
                    ) as resp:
                        if resp.status_code != 200:
                            await resp.aread()
                            raise EngineError(_status_error(server, resp))
                        answered = True
                        self._open[request.request_id] = resp
                        server.open_requests += 1
                        try:
                            async for delta in self._read(server, request, resp):
                                yield delta
                        finally:
                            server.open_requests -= 1
                        return
                except _TRANSPORT_ERRORS as exc:
                    if answered:
                        self._pool.recheck_soon()
                        raise EngineError(
                            f"the stream from the vLLM server {server.url} was cut mid-answer "
                            f"({describe_http_error(exc)})"
                        ) from None
                    # Nothing reached the server, or it closed the connection before any response (a reused
                    # keep-alive connection it was closing): retry, with backoff.
                    reason = describe_http_error(exc)
                    attempt += 1
                    if attempt > retries:
                        self._pool.mark_down(server, reason)
                        self._pool.recheck_soon()
                        if self._pool.healthy():  # another server can take it (and the rest of the answer)
                            self._pool.release(server)
                            server, attempt = self._pool.pick(request.affinity), 0
                            retries = 0
                            continue
                        raise EngineError(f"cannot reach the vLLM server {server.url}: {reason}") from None
                    await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
                except httpx.TimeoutException:
                    raise EngineError(
                        f"the vLLM server {server.url} sent nothing for {self._config.read_timeout_s:g} s"
                    ) from None
                except httpx.HTTPError as exc:
                    raise EngineError(f"the vLLM server {server.url} failed: {describe_http_error(exc)}") from None
                finally:
                    self._open.pop(request.request_id, None)
                    self._aborted.discard(request.request_id)
        finally:
            self._pool.release(server)

    async def _read(
        self, server: Server, request: GenerationRequest, resp: httpx.Response
    ) -> AsyncIterator[GenerationDelta]:
        prompt_tokens = len(request.prompt_token_ids or ())
        cached = 0
        completion_seen = 0
        held: GenerationDelta | None = None  # the finishing chunk waits for the usage chunk after it
        scanner = _StopScanner(request.sampling.stop[SERVER_STOPS:])
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message", error) if isinstance(error, dict) else error
                raise EngineError(f"the vLLM server {server.url} failed the request: {message}")
            usage = chunk.get("usage") or {}
            if usage:
                prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
                details = usage.get("prompt_tokens_details") or {}
                cached = int(details.get("cached_tokens") or cached)
            for choice in chunk.get("choices") or ():
                ids = choice.get("token_ids")
                if ids is not None:
                    new = len(ids)
                    ids = self._without_specials(ids, choice)
                elif usage.get("completion_tokens") is not None:
                    new = int(usage["completion_tokens"]) - completion_seen
                else:
                    new = 1 if choice.get("text") else 0
                completion_seen += new
                # Like vLLM, stop strings apply only once min_tokens are generated.
                text, stopped = scanner.feed(choice.get("text") or "", completion_seen >= request.sampling.min_tokens)
                finish = choice.get("finish_reason")
                if finish is not None or stopped:
                    text += "" if stopped else scanner.flush()
                delta = GenerationDelta(
                    text=text,
                    new_tokens=new,
                    prompt_tokens=prompt_tokens,
                    cached_prompt_tokens=cached,
                    finish_reason="stop" if stopped else finish,
                    token_ids=tuple(ids or ()),
                )
                if stopped:  # a stop string the server was not given: end here (closing the stream aborts it)
                    yield delta
                    return
                if delta.finished:
                    held = delta
                    continue
                yield delta
        if held is None:
            if request.request_id in self._aborted:
                return
            raise EngineError(f"the stream from the vLLM server {server.url} ended before the request finished")
        yield dataclasses.replace(held, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)

    def _without_specials(self, ids: list[int], choice: dict[str, Any]) -> list[int]:
        """A delta's generated ids as its text is: without special tokens (the EOS that ended it included), so a
        later prompt continues from the tokens the model wrote and no role marker comes in with them."""
        special = self._local_special if self._local is not None else self._server_tok.special_ids
        kept = [t for t in ids if t not in special]
        eos_stop = choice.get("finish_reason") == "stop" and not isinstance(choice.get("stop_reason"), str)
        if eos_stop and kept and ids and kept[-1] == ids[-1]:  # ended by an EOS (or stop id) not known as special
            kept.pop()
        return kept

    def _headers(self, request: GenerationRequest) -> dict[str, str] | None:
        """The answer's affinity key as a header, for a router in between that pins sessions by header."""
        name = self._config.affinity_header
        return {name: request.affinity} if name and request.affinity else None

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": list(request.prompt_token_ids or ()),
            "max_tokens": s.max_tokens,
            "min_tokens": s.min_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "add_special_tokens": False,  # the chat template holds them already
            "request_id": request.request_id,
        }
        if s.top_k > 0:
            body["top_k"] = s.top_k
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop[:SERVER_STOPS])  # the rest: _StopScanner, here
        if s.ignore_eos:
            body["ignore_eos"] = True
        if s.allowed_token_ids:
            body["allowed_token_ids"] = list(s.allowed_token_ids)
        if s.stream_interval > 1:  # fewer SSE chunks to read (vLLM >= 0.32; an older server ignores the field)
            body["stream_interval"] = s.stream_interval
        up = self._pool.healthy()
        if up and all(srv.features.get("token_ids") for srv in up):
            body["return_token_ids"] = True
        if s.regex:
            if all(srv.features.get("structured_outputs") for srv in up):
                body["structured_outputs"] = {"regex": s.regex}
            elif all(srv.features.get("guided_regex") for srv in up):
                body["guided_regex"] = s.regex
            else:
                raise EngineError(
                    "the vLLM server does not honour a regex (structured_outputs or guided_regex), which the "
                    "guided skeleton needs; upgrade it or set SOTRAG_SOT__GUIDED_SKELETON=false"
                )
        if s.json_schema:
            if not all(srv.features.get("structured_outputs") for srv in up):
                raise EngineError("the vLLM server has no structured outputs, which a JSON response_format needs")
            body["structured_outputs"] = {"json": json.loads(s.json_schema), "disable_any_whitespace": True}
        return body

    async def abort(self, request_id: str) -> None:
        """Close the request's stream: vLLM aborts a request whose client went away."""
        resp = self._open.pop(request_id, None)
        if resp is not None:
            self._aborted.add(request_id)
            await resp.aclose()

    def num_unfinished_requests(self) -> int:
        """Requests this process holds open on the servers."""
        return len(self._open)

    def load(self) -> EngineLoad:
        return self._pool.load(self._config.resolved_max_num_seqs)

    def server_for(self, affinity: str) -> str | None:
        """The URL an answer's requests go to (None before its first request)."""
        server = self._pool.server_of(affinity)
        return server.url if server else None

    def servers(self) -> list[dict[str, object]]:
        """Each server: up or down (with why) and its last load; for ``/readyz``. (No ``health()``: servers that
        are down come back, so the pool never reports itself dead and the process is not restarted for it.)"""
        return [s.status() for s in self._pool.servers]

    async def aclose(self) -> None:
        await self._pool.aclose()
        for resp in list(self._open.values()):
            await resp.aclose()
        self._open.clear()
        await self._client.aclose()
        self._sync.close()


def _load_local_tokenizer(name: str) -> tuple[Any, str | None]:
    """A Hugging Face tokenizer for ``name`` from a local folder or the local hub cache (never downloaded),
    or None and why not."""
    if not name:
        return None, "no model or tokenizer named"
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True), None
    except Exception as exc:
        return None, f"{name} is not a local tokenizer ({type(exc).__name__})"


class ServerTokenizer:
    """Prompt pieces encoded through a vLLM server's ``/tokenize``, content kept free of special tokens.

    ``/tokenize`` always turns special-token strings into special tokens (it has no ``split_special_tokens``),
    so content is encoded by ``chat_ids.encode_avoiding``: cut at every known special-token string, each
    occurrence encoded in two halves. The special-token strings are learnt from the server:

    - every added token of ``/tokenizer_info`` when the server shares it (``--enable-tokenizer-info-endpoint``):
      then the list is complete;
    - every id the chat template writes (its pieces between contents, checked again for each new piece), and
      the ids next to a special one while they are special too (special tokens sit in one run of ids: Qwen's
      ``<|endoftext|>`` beside the ``<|im_start|>`` the template writes).

    An id counts as special when its text, written four times in different surroundings, comes back as
    that id four times: text that is split out before the vocabulary is applied. A plain vocabulary token
    can pass this too; its string is then only split needlessly in content (still plain text).

    The gap without ``/tokenizer_info``: a special token that the template never writes and that lies
    outside the run of ids around the template's own is not known, so content holding its string gets it
    as a special token; so does a one-character special token, which cannot be split. As a last check no
    known special id may come out of content (``EngineError`` otherwise).
    """

    NEIGHBOURS = 512  # at most this many ids walked each way from a known special id

    def __init__(self, call: Callable[[str, dict[str, Any]], dict[str, Any]], model: Callable[[], str | None]):
        self._call = call
        self._model = model
        self.markers: set[str] = set()
        self.special_ids: set[int] = set()
        self._classified: dict[int, bool] = {}
        self._tokens = LRU(_CACHE_MAX)  # text -> ids, special strings parsed
        self._plain = LRU(_CACHE_MAX)  # text -> plain ids

    def tokenize(self, text: str) -> list[int]:
        """``text`` as the server encodes a prompt: special-token strings become special tokens."""
        cached = self._tokens.get_fresh(text)
        if cached is None:
            body = {"model": self._model(), "prompt": text, "add_special_tokens": False}
            cached = tuple(self._call("/tokenize", body)["tokens"])
            self._tokens.put(text, cached)
        return list(cached)

    def template_ids(self, piece: str) -> list[int]:
        """A piece of the chat template (trusted): encoded with special tokens, which are learnt from it."""
        ids = self.tokenize(piece)
        for token in ids:
            self._learn_id(token)
        return ids

    def plain_ids(self, text: str) -> list[int]:
        """``text`` as plain text: no known special token can come out of it."""
        cached = self._plain.get_fresh(text)
        if cached is not None:
            return list(cached)
        ids = chat_ids.encode_avoiding(text, sorted(self.markers), self.tokenize)
        leaked = self.special_ids.intersection(ids)
        if leaked:
            raise EngineError(f"content would encode to special token ids {sorted(leaked)} on the vLLM server")
        self._plain.put(text, tuple(ids))
        return ids

    def learn(self, info: dict[str, Any] | None, templates: Callable[[], list[str]]) -> list[str]:
        """Learn the special-token strings (see the class doc); returns them, sorted."""
        if info:
            self._learn_info(info)
        for rendered in templates():
            for piece in re.split(r"<<sotrag-[0-9a-f]+-\w+>>", rendered):
                if piece:
                    self.template_ids(piece)
        return sorted(self.markers)

    def _learn_info(self, info: dict[str, Any]) -> None:
        added = info.get("added_tokens_decoder") or {}
        for key, token in added.items() if isinstance(added, dict) else ():
            content = token.get("content") if isinstance(token, dict) else token
            if isinstance(content, str) and content:
                self._add(int(key), content)
        named = [info.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")]
        extra = [info.get("additional_special_tokens"), info.get("extra_special_tokens")]  # names by version
        listed = [t for group in extra for t in (group.values() if isinstance(group, dict) else group or [])]
        for token in [*named, *listed]:
            content = token.get("content") if isinstance(token, dict) else token
            if isinstance(content, str) and content:
                ids = self.tokenize(content)
                if len(ids) == 1:
                    self._add(ids[0], content)

    def _add(self, token: int, text: str) -> None:
        self._classified[token] = True
        if len(text) > 1:
            self.markers.add(text)
            self.special_ids.add(token)
        elif token not in self.special_ids:
            log.warning("special token %r has one character: content holding it cannot be kept plain", text)

    def _learn_id(self, token: int) -> None:
        if token in self._classified:
            return
        if not self._is_special(token):
            return
        for step in (1, -1):  # the run of special ids around it
            other = token + step
            for _ in range(self.NEIGHBOURS):
                if other < 0 or other in self._classified or not self._is_special(other):
                    break
                other += step

    def _is_special(self, token: int) -> bool:
        known = self._classified.get(token)
        if known is not None:
            return known
        special = False
        try:
            text = str(self._call("/detokenize", {"model": self._model(), "tokens": [token]})["prompt"])
        except EngineError:  # past the vocabulary
            text = ""
        if len(text) > 1:  # one character is its own token in any context: no test, and no way to split it
            probe = f"a{text}a\n{text}\n {text} 0{text}0"
            special = self.tokenize(probe).count(token) == 4
        self._classified[token] = special
        if special:
            self._add(token, text)
        return special


class _StopScanner:
    """Stop strings applied here, on the streamed text, exactly as vLLM applies them: the text before the first
    match is kept, and text that could still begin a stop string is held back until it cannot."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buf = ""

    def feed(self, text: str, active: bool = True) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string was hit (the text is cut before it).
        Not ``active`` (fewer than min_tokens so far): nothing stops, nothing is held back."""
        if not self.stops or not active:
            return self.flush() + text, False
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        keep = max(
            (k for s in self.stops for k in range(min(len(s) - 1, len(self.buf)), 0, -1) if self.buf.endswith(s[:k])),
            default=0,
        )
        out, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


def _status_error(server: Server, resp: httpx.Response) -> str:
    """One line for an HTTP error answer from a server, with its own message when it sent one."""
    message = ""
    try:
        body = resp.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = str(error.get("message") if isinstance(error, dict) else error or "")
    except (ValueError, AttributeError):
        message = resp.text[:200] if resp.is_closed or resp.is_stream_consumed else ""
    if resp.status_code in (401, 403):
        return f"the vLLM server {server.url} refused the request ({resp.status_code}): check SOTRAG_ENGINE__API_KEY"
    line = " ".join(message.split())[:300] or resp.reason_phrase  # one line, however the server wrapped it
    return f"the vLLM server {server.url} answered {resp.status_code}: {line}"
