"""The remote engine's pure parts: URLs, server metrics, client-side stop strings, server choice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sotrag.app.engines.base import EngineError
from sotrag.app.engines.remote_pool import ServerPool, parse_metrics, split_url
from sotrag.app.engines.remote_stream import StopScanner

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
"""


def test_split_url() -> None:
    assert split_url("http://127.0.0.1:8001/v1/") == ("http://127.0.0.1:8001/v1", "http://127.0.0.1:8001")
    assert split_url("https://127.0.0.1") == ("https://127.0.0.1/v1", "https://127.0.0.1")
    for bad in ("127.0.0.1:8000", "ftp://127.0.0.1/v1", "http://127.0.0.1:99999/v1", "http:///v1", ""):
        with pytest.raises(EngineError, match="bad engine URL"):
            split_url(bad)


def test_parse_metrics_sums_engines() -> None:
    assert parse_metrics(METRICS) == (5, 1, 0.5)


@pytest.mark.parametrize(
    ("pieces", "out", "hit"),
    [
        (["ab", "c\n4", ". next"], "abc", True),  # a stop string split over three deltas
        (["a\n", "b\n", "5x"], "a\nb\n5x", False),  # near misses are released
        (["x\n4.y"], "x", True),
    ],
)
def test_stop_scanner(pieces: list[str], out: str, hit: bool) -> None:
    inactive = StopScanner(["\n4."])
    assert inactive.feed("a\n4.b", active=False) == ("a\n4.b", False)  # before min_tokens nothing stops
    scanner = StopScanner(["\n4.", "\n5."])
    text, stopped = "", False
    for piece in pieces:
        emitted, stopped = scanner.feed(piece)
        text += emitted
        if stopped:
            break
    if not stopped:
        text += scanner.flush()
    assert (text, stopped) == (out, hit)


async def test_affinity_and_least_loaded() -> None:
    async with httpx.AsyncClient() as client:
        pool = ServerPool(["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], client)
        a, b = pool.servers
        a.up = b.up = True
        a.running, b.running = 4, 1
        assert pool.pick("answer-1") is b  # least loaded
        assert pool.pick("answer-2") is b  # b: 1 running + 1 just sent, still less than a
        b.running = 9
        assert pool.pick("answer-1") is b  # one answer stays on its server
        assert pool.pick("answer-3") is a
        b.up = False
        assert pool.pick("answer-1") is a  # its server went down: the answer moves
        a.up = False
        with pytest.raises(EngineError, match="no vLLM server is up"):
            pool.pick("answer-4")


async def test_a_failing_server_is_taken_out_and_put_back() -> None:
    healthy = {"ok": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200 if healthy["ok"] else 500)
        if request.url.path == "/metrics":
            return httpx.Response(200, text=METRICS)
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        pool = ServerPool(["http://127.0.0.1:8001/v1"], client)
        await pool.poll_once()
        assert not pool.servers[0].up and "500" in pool.servers[0].reason
        healthy["ok"] = True
        await pool.poll_once()
        assert pool.servers[0].up and pool.load(16).running == 5 and pool.load(16).kv_cache_usage == 0.5


async def test_a_poll_between_two_picks_still_spreads_them() -> None:
    """The servers' /metrics do not show a request sotrag has picked them for but not sent yet (it may still be
    tokenizing it): a poll that lands in between must not make both answers look alike and go to one server."""

    def idle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="" if request.url.path == "/metrics" else "ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(idle)) as client:
        pool = ServerPool(["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"], client)
        await pool.poll_once()
        first = pool.pick("answer-1")
        await pool.poll_once()  # both idle as far as /metrics know: the pick is forgotten there
        second = pool.pick("answer-2")
        assert second is not first
        pool.release(first)
        pool.release(second)
        assert [s.in_flight for s in pool.servers] == [0, 0]
        again = pool.pick("answer-3")
        assert pool.pick("answer-3") is again and again.in_flight == 2  # an answer's requests all count


async def test_an_answer_that_ended_since_the_last_poll_does_not_keep_its_server_busy() -> None:
    """/metrics are up to a poll interval old. The server whose answer (4 requests) has just ended is idle now;
    the other still runs another client's request. A new answer must go to the idle one, not wait for a poll."""
    running = {8001: 0, 8002: 0}

    def metrics(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/metrics":
            return httpx.Response(200, text="ok")
        value = running[request.url.port or 0]
        return httpx.Response(200, text=f'vllm:num_requests_running{{model_name="m"}} {value}.0\n')

    async with httpx.AsyncClient(transport=httpx.MockTransport(metrics)) as client:
        pool = ServerPool(["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"], client)
        await pool.poll_once()
        first = pool.pick("answer-1")
        for _ in range(3):
            assert pool.pick("answer-1") is first
        other = next(s for s in pool.servers if s is not first)
        running[8001 if first.url.endswith(":8001/v1") else 8002] = 4  # the poll sees the answer running ...
        running[8001 if other.url.endswith(":8001/v1") else 8002] = 1  # ... and someone else's request
        await pool.poll_once()
        assert (first.requests(), other.requests()) == (4, 1)
        for _ in range(4):  # ... which then ends, before the next poll
            pool.release(first)
        assert (first.requests(), other.requests()) == (0, 1)
        assert pool.pick("answer-2") is first
        assert pool.load(max_num_seqs=8).running == 1  # the next answer would join answer-2's server or the other


async def test_a_health_check_that_times_out_is_slow_not_down_until_it_happens_three_times() -> None:
    """A busy server (or a starved sotrag) can miss one 2 s health check while it streams fine: taking it out at
    once failed every answer with "no vLLM server is up" (seen with both servers under a long SoT answer).
    A refused connection is still taken as down at once."""
    slow: set[int] = set()
    refused: set[int] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        port = request.url.port or 0
        if port in refused:
            raise httpx.ConnectError("connection refused", request=request)
        if port in slow:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, text="" if request.url.path == "/metrics" else "ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = ServerPool(["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"], client)
        await pool.poll_once()
        assert [s.up for s in pool.servers] == [True, True]
        slow.update({8001, 8002})
        for _ in range(2):
            await pool.poll_once()
            assert [s.up for s in pool.servers] == [True, True]  # slow, still usable
            pool.release(pool.pick(None))
        slow.discard(8002)  # one answers again: its count starts over
        await pool.poll_once()
        assert [s.up for s in pool.servers] == [False, True]
        assert "3 health checks in a row" in pool.servers[0].reason
        slow.add(8002)
        for _ in range(2):
            await pool.poll_once()
        assert pool.servers[1].up
        refused.add(8002)
        await pool.poll_once()
        assert not pool.servers[1].up and "cannot connect" in pool.servers[1].reason
        slow.clear()
        refused.clear()
        await pool.poll_once()
        assert [s.up for s in pool.servers] == [True, True]


async def test_a_connection_closed_before_any_response_is_retried_and_a_cut_stream_is_an_error() -> None:
    """A request that goes out on a keep-alive connection the server is closing fails with "Server disconnected
    without sending a response": nothing was generated, so it is retried (it used to end the answer as a stream
    "cut mid-answer"). A stream cut after the server answered is still an error, not retried."""
    import json

    from sotrag.app.config import EngineConfig
    from sotrag.app.engines.base import GenerationRequest
    from sotrag.app.engines.remote import RemoteEngine

    posts: list[str] = []
    mode = {"cut": False}

    def chunk(text: str, finish: str | None) -> str:
        choice = {"index": 0, "text": text, "token_ids": [5], "finish_reason": finish}
        return "data: " + json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})

    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield (chunk("a", None) + "\n\n").encode()
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/completions":
            return httpx.Response(200, text="ok")
        posts.append(request.url.path)
        if mode["cut"]:
            return httpx.Response(200, stream=Cut(), headers={"content-type": "text/event-stream"})
        if len(posts) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        body = chunk("a", None) + "\n\n" + chunk("b", "length") + "\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    engine = RemoteEngine(EngineConfig(urls=["http://127.0.0.1:8001/v1"], model="m"))
    await engine.transport.client.aclose()
    engine.transport.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    engine.transport.pool.client = engine.transport.client
    engine.tokens.server.special_ids = set()
    try:
        server = engine.transport.pool.servers[0]
        server.up = server.probed = True  # (the model probe is not what this test is about)
        request = GenerationRequest(request_id="r1", prompt="x", prompt_token_ids=(1, 2, 3))
        deltas = [d async for d in engine.generate(request)]
        assert len(posts) == 2 and "".join(d.text for d in deltas) == "ab" and deltas[-1].finish_reason == "length"
        assert engine.transport.pool.servers[0].up and engine.transport.pool.servers[0].in_flight == 0

        mode["cut"] = True
        with pytest.raises(EngineError, match="cut mid-answer"):
            async for _ in engine.generate(GenerationRequest(request_id="r2", prompt="x", prompt_token_ids=(1,))):
                pass
        assert len(posts) == 3  # not retried: the server had answered
    finally:
        await engine.aclose()


async def test_a_health_check_on_a_connection_the_server_just_closed_is_tried_again() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if calls.count("/health") == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, text="" if request.url.path == "/metrics" else "ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        pool = ServerPool(["http://127.0.0.1:8001/v1"], client)
        await pool.poll_once()
        assert pool.servers[0].up and calls == ["/health", "/health", "/metrics"]
