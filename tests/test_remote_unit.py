"""The remote engine's pure parts: URLs, server metrics, client-side stop strings, server choice."""

from __future__ import annotations

import httpx
import pytest

from sotrag.app.engines.base import EngineError
from sotrag.app.engines.remote import _StopScanner
from sotrag.app.engines.remote_pool import ServerPool, parse_metrics, split_url

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
    inactive = _StopScanner(["\n4."])
    assert inactive.feed("a\n4.b", active=False) == ("a\n4.b", False)  # before min_tokens nothing stops
    scanner = _StopScanner(["\n4.", "\n5."])
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
