"""The vLLM servers behind the remote engine: their health, their load, and which one an answer goes to.

Why a pool and not a load balancer in front: Skeleton-of-Thought sends one skeleton and then N point requests
that share one long prompt prefix. They must all reach the SAME server, or every point pays its prefix again
(the prefix cache is per server). So the pool pins each answer (its affinity key) to one server, and only a
new answer picks a server: the least loaded healthy one, read from each server's own Prometheus ``/metrics``.

A background task polls every server's ``/health`` and ``/metrics`` every ``poll_interval_s``; a server that
fails is taken out at once (also when a request cannot connect to it), one whose checks time out after
``DOWN_AFTER_TIMEOUTS`` in a row, and either is put back when it is healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from sotrag.app.engines.base import EngineError, EngineLoad, EngineUnavailable

log = logging.getLogger("sotrag.engine.remote")

AFFINITY_TTL_S = 600.0  # an answer longer than this would lose its server (none is)
AFFINITY_MAX = 4096
# A health check that times out is taken as "slow", not "down", until this many in a row (Kubernetes'
# failureThreshold default): a busy server, or a starved sotrag, can miss one 2 s check while it streams fine,
# and taking every server out on one miss failed answers with "no vLLM server is up". A refused connection or
# an error status is taken as down at once.
DOWN_AFTER_TIMEOUTS = 3


def split_url(url: str) -> tuple[str, str]:
    """``(api_base, root)`` of a server URL: ``http://h:p/v1`` -> (``http://h:p/v1``, ``http://h:p``).
    A URL without ``/v1`` gets it. Raises ``EngineError`` for anything that is not an http(s) URL."""
    text = (url or "").strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise EngineError(f"bad engine URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineError(f"bad engine URL {url!r}: use http(s)://HOST[:PORT]/v1")
    del port
    if parts.query or parts.fragment:
        raise EngineError(f"bad engine URL {url!r}: no query or fragment, please")
    if text.endswith("/v1"):
        return text, text[: -len("/v1")]
    return text + "/v1", text


def without_credentials(url: str) -> str:
    """The URL without a user name or password in it: how a server is named in messages and the log (requests use
    the configured URL, credentials included)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def parse_metrics(text: str) -> tuple[int, int, float]:
    """``(running, waiting, kv_cache_usage)`` summed over a server's engines (data parallel has several)."""
    from prometheus_client.parser import text_string_to_metric_families

    running = waiting = 0.0
    kv: list[float] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:num_requests_running":
                running += sample.value
            elif sample.name == "vllm:num_requests_waiting":
                waiting += sample.value
            elif sample.name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
                kv.append(sample.value)
    return int(running), int(waiting), (max(kv) if kv else 0.0)


@dataclass
class Server:
    """One vLLM OpenAI server, as the pool sees it."""

    url: str  # as configured, less any credentials (``without_credentials``): for messages and the log
    api_base: str  # .../v1
    root: str  # where /health, /metrics, /tokenize live
    up: bool = False
    reason: str = "not checked yet"
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    polled_at: float = 0.0
    started_since_poll: int = 0  # requests this process sent after the last /metrics read
    ended_since_poll: int = 0  # requests of this process that ended after the last /metrics read
    open_requests: int = 0  # streams this process has open on it now (live, unlike the polled counts)
    in_flight: int = 0  # requests this process picked it for and that have not ended (sent or still to send)
    last_picked: float = 0.0
    timeouts: int = 0  # health checks in a row that got no answer in time
    probed: bool = False  # models and features checked
    features: dict[str, bool] = field(default_factory=dict)

    def requests(self) -> int:
        """The requests on this server now, as well as this process can tell. The polled counts see every
        client's requests, but only as of the last poll (up to ``poll_interval_s`` old), so this process's own
        starts and ends since then are applied to them: an answer that has just ended does not keep its server
        looking busy until the next poll. A request this process picked the server for counts at once
        (``in_flight``), also when a poll falls between the pick and the server's first sight of it."""
        polled = self.running + self.waiting + self.started_since_poll - self.ended_since_poll
        return max(polled, self.in_flight, 0)

    def score(self) -> tuple[float, float, float]:
        """Least loaded first; then the emptier KV cache; then the one picked longest ago."""
        return (self.requests(), self.kv_cache_usage, self.last_picked)

    def status(self) -> dict[str, object]:
        return {
            "url": self.url,
            "up": self.up,
            "reason": None if self.up else self.reason,
            "running": self.running,
            "waiting": self.waiting,
            "kv_cache_usage": round(self.kv_cache_usage, 4),
            "open_requests": self.open_requests,
        }


class ServerPool:
    """Health, load and per-answer affinity over several servers. Start with ``start()`` in the event loop."""

    def __init__(
        self,
        urls: Iterable[str],
        client: httpx.AsyncClient,
        *,
        poll_interval_s: float = 0.5,
        probe: Callable[[Server], Awaitable[None]] | None = None,
    ) -> None:
        self.servers: list[Server] = []
        seen: set[str] = set()
        for url in urls:
            api_base, root = split_url(url)
            if api_base in seen:
                continue
            seen.add(api_base)
            self.servers.append(Server(url=without_credentials(url), api_base=api_base, root=root))
        if not self.servers:
            raise EngineError("no engine URL given")
        self.client = client
        self.poll_interval_s = poll_interval_s
        self._probe = probe  # async callable(server): models + features, run when a server first comes up
        self._affinity: OrderedDict[str, tuple[Server, float]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- polling ----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(s) for s in self.servers))

    async def _get(self, url: str) -> httpx.Response:
        """GET for the health poll, once more on a fresh connection if the server closed the one reused (a
        keep-alive connection it was closing as the request went out): that is not a server going down."""
        timeout = httpx.Timeout(2.0, connect=2.0)
        try:
            return await self.client.get(url, timeout=timeout)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self.client.get(url, timeout=timeout)

    async def _poll(self, server: Server) -> None:
        try:
            health = await self._get(f"{server.root}/health")
            if health.status_code != 200:
                raise _Down(f"/health answered {health.status_code}")
            if not server.probed and self._probe is not None:
                await self._probe(server)
                server.probed = True
            metrics = await self._get(f"{server.root}/metrics")
            if metrics.status_code == 200:
                server.running, server.waiting, server.kv_cache_usage = parse_metrics(metrics.text)
            server.polled_at = time.monotonic()
            server.started_since_poll = server.ended_since_poll = 0
            server.timeouts = 0
            if not server.up:
                log.info("vLLM server %s is up", server.url)
            server.up, server.reason = True, ""
        except EngineError as exc:  # the probe found it unusable (wrong model, missing feature)
            self.mark_down(server, str(exc))
        except _Down as exc:
            self.mark_down(server, str(exc))
        except httpx.TimeoutException as exc:
            server.timeouts += 1
            if server.timeouts >= DOWN_AFTER_TIMEOUTS or not server.up:
                self.mark_down(server, f"{describe_http_error(exc)} ({server.timeouts} health checks in a row)")
            else:
                log.info("vLLM server %s: health check %d timed out; still counted up", server.url, server.timeouts)
        except httpx.HTTPError as exc:
            self.mark_down(server, describe_http_error(exc))

    def mark_down(self, server: Server, reason: str) -> None:
        if server.up:
            log.warning("vLLM server %s is down: %s", server.url, reason)
        server.up, server.reason = False, reason

    async def start(self) -> None:
        await self.poll_once()
        self._task = asyncio.create_task(self._loop(), name="sotrag-remote-poll")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep polling whatever happens
                log.exception("polling the vLLM servers failed")

    def recheck_soon(self) -> None:
        """A request saw trouble: poll now rather than at the next interval."""
        self._wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- choosing a server ------------------------------------------------------------------------------

    def healthy(self) -> list[Server]:
        return [s for s in self.servers if s.up]

    def least_loaded(self) -> Server:
        up = self.healthy()
        if not up:
            raise EngineUnavailable(f"no vLLM server is up: {self.down_summary()}")
        return min(up, key=Server.score)

    def pick(self, affinity: str | None) -> Server:
        """The server for a request of answer ``affinity``: the answer's server while it is up, else (a new
        answer, or its server went down) the least loaded healthy one, which the answer then keeps."""
        now = time.monotonic()
        while self._affinity:  # drop expired keys, oldest first
            _, (_, used) = next(iter(self._affinity.items()))
            if now - used < AFFINITY_TTL_S and len(self._affinity) <= AFFINITY_MAX:
                break
            self._affinity.popitem(last=False)
        if affinity is not None and affinity in self._affinity:
            server, _ = self._affinity[affinity]
            if server.up:
                self._affinity[affinity] = (server, now)
                self._affinity.move_to_end(affinity)
                server.started_since_poll += 1
                server.in_flight += 1
                return server
        server = self.least_loaded()
        server.last_picked = now
        server.started_since_poll += 1  # seen as load by the next pick, before the next /metrics read
        server.in_flight += 1
        if affinity is not None:
            self._affinity[affinity] = (server, now)
            self._affinity.move_to_end(affinity)
        return server

    def release(self, server: Server) -> None:
        """A request ``pick`` chose ``server`` for has ended (finished, failed or aborted)."""
        server.in_flight = max(0, server.in_flight - 1)
        server.ended_since_poll += 1

    def load(self, max_num_seqs: int) -> EngineLoad:
        """The load of the server a new answer would get now (what auto mode's load policy should judge)."""
        up = self.healthy()
        if not up:
            return EngineLoad(running=0, waiting=0, max_num_seqs=max_num_seqs, kv_cache_usage=0.0)
        s = min(up, key=Server.score)
        return EngineLoad(
            running=max(0, s.requests() - s.waiting),
            waiting=s.waiting,
            max_num_seqs=max_num_seqs,
            kv_cache_usage=s.kv_cache_usage,
        )

    def down_summary(self) -> str:
        return "; ".join(f"{s.url} ({s.reason})" for s in self.servers if not s.up) or "none"


class _Down(Exception):
    pass


def describe_http_error(exc: httpx.HTTPError) -> str:
    """One line for a transport error, without the stack of wrapped exceptions."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer in time (read timeout)"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc) or type(exc).__name__
        if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
            return f"TLS error: {text}"
        return f"cannot connect: {text}"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"connection broken: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"
