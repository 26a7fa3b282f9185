"""The remote engine's transport: HTTP to one or more vLLM OpenAI servers (``vllm serve``).

Why the completions API and not chat completions: SoT's point requests continue an open assistant turn and
may continue from token ids (``GenerationRequest.prompt_token_ids``); ``/v1/completions`` takes a token-id
prompt and, with ``return_token_ids``, streams the generated ids back.

Streams: each request is one streamed HTTP response; closing it (the pipeline closes the generator on cancel)
closes the connection, and vLLM aborts a request whose client is gone. Only connection errors are retried (with
backoff): a request that reached a server is never sent twice. Which server takes a request, and which are up,
is the ``ServerPool``'s (``remote_pool``); reading a stream is ``remote_stream``'s.

Without ``/tokenize`` a server is refused (the engine cannot know the chat template). Without
``return_token_ids`` (older servers) deltas carry no token ids and token-id prompts cannot be continued from
generated ids. Without prompt-token details, ``cached_prompt_tokens`` is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncGenerator, Callable, Collection
from typing import Any

import httpx

from sotrag.app.config import EngineConfig
from sotrag.app.engines.base import (
    EngineError,
    EngineLoad,
    EngineRejected,
    EngineUnavailable,
    GenerationDelta,
    GenerationRequest,
)
from sotrag.app.engines.json_grammar import SchemaError, compact_json_grammar
from sotrag.app.engines.remote_pool import Server, ServerPool, describe_http_error
from sotrag.app.engines.remote_stream import SERVER_STOPS, read_completions

log = logging.getLogger("sotrag.engine.remote")

BACKOFF_S = 0.25  # first retry after this, then doubling
# Connection-level failures: before the server answered, nothing was generated, so they are retried; after,
# the stream was cut mid-answer.
_TRANSPORT_ERRORS = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError
)
KEEPALIVE_S = 2.0  # idle connections to a server are closed after this (under its own keep-alive)


class RemoteTransport:
    """Requests to the servers: the model and context length they serve (``probe``), blocking calls for the
    tokenizing half (``call_sync``), streamed completions with retries (``generate``), abort, load, status."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s)
        # Idle connections are dropped before the server's keep-alive ends (vLLM's uvicorn: 5 s, as httpx's
        # default): else a request can go out on a connection the server is closing at that moment, and fail
        # with "Server disconnected without sending a response".
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_S)
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits)
        # encode_chat / count_tokens are synchronous in the Engine interface: a small blocking client, used from
        # worker threads on the serving path (aencode_chat / acount_tokens), so it never stalls the event loop.
        self.sync = httpx.Client(
            headers=headers, timeout=httpx.Timeout(30.0, connect=config.connect_timeout_s),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )
        self.pool = ServerPool(config.urls, self.client, poll_interval_s=config.poll_interval_s, probe=self.probe)
        self.model: str | None = config.model
        self.max_model_len = 0
        self.open_streams: dict[str, httpx.Response] = {}  # request id -> its response, while it streams
        self._aborted: set[str] = set()

    async def start(self) -> None:
        """Probe every server; ``EngineError`` (user-facing) when none is usable."""
        await self.pool.start()
        if not self.pool.healthy():
            servers = self.pool.servers
            if len(servers) == 1:
                s = servers[0]
                known = s.url in s.reason  # the probe's own errors name the server
                raise EngineError(s.reason if known else f"cannot reach the vLLM server {s.url}: {s.reason}",
                                  public=NOT_USABLE)
            raise EngineError(f"no vLLM server is usable: {self.pool.down_summary()}", public=NOT_USABLE)

    # -- checking a server ------------------------------------------------------------------------------

    async def probe(self, server: Server) -> None:
        """Models, context length and features of a server that just came up; ``EngineError`` if unusable."""
        models = await self._get_json(server, f"{server.api_base}/models")
        entries = {m.get("id"): m for m in models.get("data", []) if isinstance(m, dict)}
        names = ", ".join(sorted(str(n) for n in entries)) or "none"
        if self.model is None:
            if len(entries) != 1:
                raise EngineError(
                    f"the vLLM server {server.url} serves several models ({names}): name one with --model"
                )
            self.model = str(next(iter(entries)))
        if self.model not in entries:
            raise EngineError(f"the vLLM server {server.url} has no model {self.model!r}; it serves: {names}")
        # The server's context length is the truth (engine.max_model_len is for an in-process engine).
        length = int(entries[self.model].get("max_model_len") or self.config.max_model_len or 0)
        self.max_model_len = min(self.max_model_len, length) if self.max_model_len else length

        tokenized = await self._post_json(
            server, f"{server.root}/tokenize", {"model": self.model, "prompt": "1", "add_special_tokens": False},
            missing=f"the vLLM server {server.url} has no /tokenize route, which sotrag needs to use the "
            "server's chat template (is it a vLLM server?)",
        )
        await self._post_json(
            server, f"{server.root}/detokenize", {"model": self.model, "tokens": tokenized["tokens"]},
            missing=f"the vLLM server {server.url} has no /detokenize route, which sotrag needs",
        )
        features = {}
        probe = {"model": self.model, "prompt": tokenized["tokens"], "max_tokens": 4, "temperature": 0.0}
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
        resp = await self.client.get(url, timeout=httpx.Timeout(10.0, connect=self.config.connect_timeout_s))
        if resp.status_code != 200:
            raise EngineError(status_error(server, resp))
        return dict(resp.json())

    async def _post_json(
        self, server: Server, url: str, body: dict[str, Any], *, missing: str | None = None
    ) -> dict[str, Any]:
        timeout = httpx.Timeout(60.0, connect=self.config.connect_timeout_s)
        resp = await self.client.post(url, json=body, timeout=timeout)
        if resp.status_code == 404 and missing:
            raise EngineError(missing)
        if resp.status_code != 200:
            raise EngineError(status_error(server, resp))
        return dict(resp.json())

    # -- blocking calls, for the tokenizing half (from worker threads) ------------------------------------

    def call_sync(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to a healthy server's ``route`` (any server: they share model and template)."""
        errors = []
        for server in sorted(self.pool.healthy(), key=Server.score) or self.pool.servers:
            try:
                resp = self.sync.post(f"{server.root}{route}", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{server.url} ({describe_http_error(exc)})")
                self.pool.mark_down(server, describe_http_error(exc))
                self.pool.recheck_soon()
                continue
            if resp.status_code != 200:
                raise status_exception(server, resp)
            return dict(resp.json())
        raise EngineUnavailable(f"no vLLM server could {route.strip('/')}: {'; '.join(errors)}")

    def tokenizer_info(self) -> dict[str, Any] | None:
        """The server's tokenizer config (``--enable-tokenizer-info-endpoint``), if it shares it."""
        for server in self.pool.healthy():
            try:
                resp = self.sync.get(f"{server.root}/tokenizer_info")
            except httpx.HTTPError:
                continue
            if resp.status_code == 200:
                return dict(resp.json())
        return None

    # -- streamed requests ------------------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, special: Callable[[], Collection[int]]
    ) -> AsyncGenerator[GenerationDelta, None]:
        """Stream ``request`` (its ``prompt_token_ids`` set) from the server its affinity picks; ``special()``: the
        special token ids, left out of the deltas' ids."""
        body = self._body(request)
        retries = self.config.connect_retries
        server = self.pool.pick(request.affinity)
        try:  # the pick counts as load on the server until the request ends, whichever way
            attempt = 0
            while True:
                answered = False  # the server sent a response (until then, nothing was generated: a retry is safe)
                try:
                    async with self.client.stream(
                        "POST", f"{server.api_base}/completions", json=body, headers=self._headers(request)
                    ) as resp:
                        if resp.status_code != 200:
                            await resp.aread()
                            raise status_exception(server, resp)
                        answered = True
                        self.open_streams[request.request_id] = resp
                        server.open_requests += 1
                        try:
                            deltas = read_completions(
                                resp, request, server_url=server.url, special=special,
                                aborted=lambda: request.request_id in self._aborted,
                            )
                            async with contextlib.aclosing(deltas):
                                async for delta in deltas:
                                    yield delta
                        finally:
                            server.open_requests -= 1
                        return
                except _TRANSPORT_ERRORS as exc:
                    if answered:
                        self.pool.recheck_soon()
                        raise EngineUnavailable(
                            f"the stream from the vLLM server {server.url} was cut mid-answer "
                            f"({describe_http_error(exc)})"
                        ) from None
                    # Nothing reached the server, or it closed the connection before any response (a reused
                    # keep-alive connection it was closing): retry, with backoff.
                    reason = describe_http_error(exc)
                    attempt += 1
                    if attempt > retries:
                        self.pool.mark_down(server, reason)
                        self.pool.recheck_soon()
                        if self.pool.healthy():  # another server can take it (and the rest of the answer)
                            self.pool.release(server)
                            server, attempt = self.pool.pick(request.affinity), 0
                            retries = 0
                            continue
                        raise EngineUnavailable(f"cannot reach the vLLM server {server.url}: {reason}") from None
                    await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
                except httpx.TimeoutException:
                    raise EngineUnavailable(
                        f"the vLLM server {server.url} sent nothing for {self.config.read_timeout_s:g} s"
                    ) from None
                except httpx.HTTPError as exc:
                    raise EngineUnavailable(
                        f"the vLLM server {server.url} failed: {describe_http_error(exc)}"
                    ) from None
                finally:
                    self.open_streams.pop(request.request_id, None)
                    self._aborted.discard(request.request_id)
        finally:
            self.pool.release(server)

    def _headers(self, request: GenerationRequest) -> dict[str, str] | None:
        """The answer's affinity key as a header, for a router in between that pins sessions by header."""
        name = self.config.affinity_header
        return {name: request.affinity} if name and request.affinity else None

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
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
        seed = self._seed(request)
        if seed is not None:
            body["seed"] = seed
        if s.stop:
            body["stop"] = list(s.stop[:SERVER_STOPS])  # the rest: remote_stream.StopScanner, here
        if s.ignore_eos:
            body["ignore_eos"] = True
        if s.allowed_token_ids:
            body["allowed_token_ids"] = list(s.allowed_token_ids)
        if s.stream_interval > 1:  # fewer SSE chunks to read (vLLM >= 0.32; an older server ignores the field)
            body["stream_interval"] = s.stream_interval
        up = self.pool.healthy()
        if up and all(srv.features.get("token_ids") for srv in up):
            body["return_token_ids"] = True
        if s.regex:
            if all(srv.features.get("structured_outputs") for srv in up):
                body["structured_outputs"] = {"regex": s.regex}
            elif all(srv.features.get("guided_regex") for srv in up):
                body["guided_regex"] = s.regex
            else:
                raise EngineError(
                    "the vLLM server does not honour a regex (structured_outputs or guided_regex), which a guided "
                    "skeleton needs (the retry of a skeleton with too few points, or sot.guided_skeleton); upgrade "
                    "it, or set SOTRAG_SOT__SKELETON_FALLBACK=normal with SOTRAG_SOT__GUIDED_SKELETON off (the default)"
                )
        if s.json_schema:
            try:  # the client's 422 now, not the server's 400 mid-answer (the compiler the in-process engine uses)
                compact_json_grammar(s.json_schema)
            except SchemaError as exc:
                raise EngineRejected(str(exc), param="response_format") from None
            if not all(srv.features.get("structured_outputs") for srv in up):
                raise EngineError("the vLLM server has no structured outputs, which a JSON response_format needs")
            body["structured_outputs"] = {"json": json.loads(s.json_schema), "disable_any_whitespace": True}
        return body

    def _seed(self, request: GenerationRequest) -> int | None:
        """The request's seed, or None unless ``engine.remote_seeds`` says the servers take seeds safely: a vLLM CPU
        server with chunked prefill (its default) dies on a seeded request, for every client (this process cannot
        read a server's device or scheduler settings). A greedy request needs no seed."""
        s = request.sampling
        if s.seed is None or s.temperature == 0:
            return None
        if self.config.remote_seeds:
            return s.seed
        _warn_seed_dropped()
        return None

    async def abort(self, request_id: str) -> None:
        """Close the request's stream: vLLM aborts a request whose client went away."""
        resp = self.open_streams.pop(request_id, None)
        if resp is not None:
            self._aborted.add(request_id)
            await resp.aclose()

    def load(self) -> EngineLoad:
        return self.pool.load(self.config.resolved_max_num_seqs)

    def servers(self) -> list[dict[str, object]]:
        """Each server: up or down (with why) and its last load."""
        return [s.status() for s in self.pool.servers]

    async def aclose(self) -> None:
        await self.pool.aclose()
        for resp in list(self.open_streams.values()):
            await resp.aclose()
        self.open_streams.clear()
        await self.client.aclose()
        self.sync.close()


@functools.cache  # once a process
def _warn_seed_dropped() -> None:
    log.warning(
        "per-request sampling seeds are not sent to the vLLM servers: a CPU server with chunked prefill would crash "
        "on them (set SOTRAG_ENGINE__REMOTE_SEEDS=true when every server is a GPU server, or a CPU server started "
        "with --no-enable-chunked-prefill)"
    )


NOT_USABLE = "no vLLM server is usable (the server log says why)"
CREDENTIALS = "the vLLM server refused sotrag's credentials (the server log says why)"


def status_exception(server: Server, resp: httpx.Response) -> EngineError:
    """The error for a server's HTTP error answer to a request: ``EngineRejected`` (the client's 4xx, naming the
    parameter where the server did) for a 400 or 422, which vLLM sends for a value it refuses (a seed out of
    range, a schema its grammar compiler rejects); ``EngineError`` for a refused key (the operator's to fix);
    else ``EngineUnavailable`` (a 503, a 404 from a server that lost its route or model, a proxy's 502): the
    client's 503, worth retrying. The message keeps the server's URL and text for the log; ``public`` has
    neither."""
    message = status_error(server, resp)
    if resp.status_code in (400, 422):
        return rejected(message, _error_body(resp)[1])
    if resp.status_code in (401, 403):
        return EngineError(message, public=CREDENTIALS)
    return EngineUnavailable(message)


def rejected(message: str, param: str | None) -> EngineRejected:
    """A server's refusal of one of the request's values: the client sees which parameter, not the server's text
    (it may quote the server's internals)."""
    what = f"the request's {param[:64]}" if param else "one of the request's values"
    return EngineRejected(message, param=param[:64] if param else None, public=f"the vLLM server refused {what}")


def _error_body(resp: httpx.Response) -> tuple[str, str | None]:
    """The server's own message and the parameter it named (OpenAI's error shape), if it sent them."""
    message, param = "", None
    try:
        body = resp.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = str(error.get("message") if isinstance(error, dict) else error or "")
        if isinstance(error, dict) and error.get("param"):
            param = str(error["param"])
    except (ValueError, AttributeError):
        message = resp.text[:200] if resp.is_closed or resp.is_stream_consumed else ""
    return message, param


def status_error(server: Server, resp: httpx.Response) -> str:
    """One line for an HTTP error answer from a server, with its own message when it sent one."""
    message = _error_body(resp)[0]
    if resp.status_code in (401, 403):
        return f"the vLLM server {server.url} refused the request ({resp.status_code}): check SOTRAG_ENGINE__API_KEY"
    line = " ".join(message.split())[:300] or resp.reason_phrase  # one line, however the server wrapped it
    return f"the vLLM server {server.url} answered {resp.status_code}: {line}"
