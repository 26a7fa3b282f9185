"""The remote engine against two REAL vLLM OpenAI servers (tiny random-weight model, loopback ports).

The two servers are started once for this module. What is checked comes from the servers themselves (their
own ``/metrics``: finished and aborted requests, running requests), not from sotrag's bookkeeping: every
request of one answer lands on one server, different answers spread over both, closing a stream aborts on
the server, and a server killed mid-answer ends that answer with an error while the next one goes to the
other server. The kill test is the last in the module: it leaves one server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import json as jsonlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sotrag.app.config import EngineConfig, Settings, SoTConfig
from sotrag.app.engines.remote import RemoteEngine
from sotrag.app.events import AnswerDone, PointDelta, SkeletonDelta
from sotrag.app.pipeline import SoTPipeline
from tests.fakes import sampling
from tests.serving import ServerProcess, free_port, run_server, server_env
from tests.test_server import sse_events
from tests.tiny_model import plain_token_ids
from tests.vllm_servers import MAX_MODEL_LEN, VLLMServer, run_vllm_servers

pytestmark = pytest.mark.engine

QUESTION = "What are tips to sleep better?"
SUCCESS = "vllm:request_success_total"


@pytest.fixture(scope="module")
def servers(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[VLLMServer]]:
    with run_vllm_servers(tiny_model_dir, tmp_path_factory.mktemp("vllm-servers")) as started:
        yield started


def _settings(servers: list[VLLMServer], model_dir: Path) -> Settings:
    return Settings(
        engine=EngineConfig(
            urls=[s.url for s in servers], model=str(model_dir), max_num_seqs=16, poll_interval_s=0.3,
            read_timeout_s=120,
        ),
        # No special token from the random model: its points would otherwise often be all specials, which show
        # no text until they end, and the tests below act on the first point text.
        sampling=sampling(seed=3, point_max_tokens=16, allowed_token_ids=plain_token_ids(model_dir)),
        # Guided from the start: one skeleton request an answer, so the per-server request counts are exact (the
        # random model's unguided skeleton would take a guided retry; that path is tested in-process).
        sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4, guided_skeleton=True),
    )


@pytest.fixture(scope="module")
async def remote(servers: list[VLLMServer], tiny_model_dir: Path) -> AsyncIterator[RemoteEngine]:
    engine = await RemoteEngine.create(_settings(servers, tiny_model_dir).engine)
    yield engine
    await engine.aclose()


def _finished(servers: list[VLLMServer]) -> list[float]:
    """Requests each server finished on its own (a stop or the length limit; aborts not counted)."""
    return [s.metric(SUCCESS, finished_reason="stop") + s.metric(SUCCESS, finished_reason="length") for s in servers]


async def _settled(servers: list[VLLMServer], before: list[float], total: int, each: int = 0) -> list[int]:
    """Per-server finished requests since ``before``, once ``total`` of them are counted, and at least ``each``
    on every server (bounded wait: a server's counters can trail the end of its stream)."""
    deltas: list[int] = []
    for _ in range(50):
        deltas = [int(a - b) for a, b in zip(await asyncio.to_thread(_finished, servers), before, strict=True)]
        if sum(deltas) >= total and min(deltas) >= each:
            break
        await asyncio.sleep(0.2)
    return deltas


# Seconds of work for the tiny model: points that a freeze finds unfinished. With 3000, a starved machine's
# client could be a whole point behind its server (all three points finished while the test read the first
# text of each).
LONG_POINT_TOKENS = 12000


async def _until_drained(remote: RemoteEngine, quiet_s: float = 1.0, limit_s: float = 20.0) -> None:
    """Wait until this process reads nothing more from its open streams (the servers are frozen): at least
    ``quiet_s`` without a byte or a stream ending. On a starved machine the client can be seconds behind what a
    server had already sent. Reads the engine's open responses (``httpx.Response.num_bytes_downloaded``)."""
    def seen() -> tuple[int, int]:
        open_now = list(remote.transport.open_streams.values())
        return len(open_now), sum(r.num_bytes_downloaded for r in open_now)

    start = last_change = time.monotonic()
    last = seen()
    while time.monotonic() - start < limit_s:
        await asyncio.sleep(0.1)
        now = seen()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            return


def _aborted_ids(servers: list[VLLMServer]) -> set[str]:
    """The request ids the servers logged as aborted (``--enable-log-requests``: "Aborted request(s) ID,ID.")."""
    ids: set[str] = set()
    for server in servers:
        for line in server.log().splitlines():
            _, found, rest = line.partition("Aborted request(s) ")
            if found:
                ids.update(rest.strip().rstrip(".").split(","))
    return ids


def _server_ids(rid: str, logged: set[str]) -> set[str]:
    """The server's ids for sotrag's request ``rid``: the completions route names it ``cmpl-RID-N-SUFFIX``."""
    return {i for i in logged if i.startswith(f"cmpl-{rid}-")}


async def _until_aborted(servers: list[VLLMServer], rids: list[str]) -> list[str]:
    """Those of ``rids`` no server has logged as aborted, once none is left (bounded wait: 15 s)."""
    missing = list(rids)
    for _ in range(75):
        logged = await asyncio.to_thread(_aborted_ids, servers)
        missing = [rid for rid in rids if not _server_ids(rid, logged)]
        if not missing:
            break
        await asyncio.sleep(0.2)
    return missing


def _log_of(servers: list[VLLMServer], rid_prefix: str) -> list[str]:
    """Every server log line naming one answer's requests (for a failure message)."""
    return [f"{s.port}: {line}" for s in servers for line in s.log().splitlines() if rid_prefix in line]


async def _until_idle(servers: list[VLLMServer]) -> list[float]:
    """The servers' running and waiting counts, once all are 0 (bounded: 15 s)."""
    busy: list[float] = []
    for _ in range(75):
        busy = [
            await asyncio.to_thread(s.metric, name)
            for s in servers
            for name in ("vllm:num_requests_running", "vllm:num_requests_waiting")
        ]
        if not any(busy):
            break
        await asyncio.sleep(0.2)
    return busy


async def _wait_all_up(remote: RemoteEngine) -> None:
    for _ in range(100):  # bounded: 20 s (a frozen server may have failed a health check)
        if all(s["up"] for s in remote.servers()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(remote.servers())


async def test_closing_the_stream_aborts_on_the_server(
    remote: RemoteEngine, servers: list[VLLMServer], tiny_model_dir: Path
) -> None:
    """Closing the stream while the points are unfinished on the server ends them there as aborted.

    The tiny model can write a point faster than a busy machine reads it, so the servers are frozen (SIGSTOP)
    once text of all three points has come, and this process first reads what they sent before the freeze
    (until nothing more arrives): a stream still open then is unfinished on its frozen server, and the stream
    is closed while nothing can finish. Every point still unfinished then must end aborted on its server: the
    server's own request log (``--enable-log-requests``) names each of them as aborted. (A count of finished
    requests from the servers' counters read once [3, 0] with three points unfinished on a starved CI machine;
    the log names the requests, so nothing else the server did can be counted in.) A try where all the points
    got through first does not count, nor one where the points not aborted are ones their server had finished on
    its own (its success counter says so: a starved client read behind its server); at most five tries."""
    pipeline = SoTPipeline(remote, _settings(servers, tiny_model_dir))
    long_points = pipeline.settings.sampling.model_copy(
        update={"point_max_tokens": LONG_POINT_TOKENS, "point_min_tokens": LONG_POINT_TOKENS}
    )
    unfinished: list[str] = []
    missing: list[str] = []
    for _ in range(5):
        await _wait_all_up(remote)
        await _until_idle(servers)
        finished_before = sum(await asyncio.to_thread(_finished, servers))
        stream = pipeline.stream(QUESTION, mode="sot", sampling=long_points)
        # Until text of every point has come (each point's server answered its stream and is writing it), then
        # freeze the servers at once, from here. (Waiting instead for the engine to count three open streams
        # timed out on a starved machine before the servers had answered: the freeze then found none open.)
        with_text: set[int] = set()
        async for event in stream:
            if isinstance(event, PointDelta) and event.text:
                with_text.add(event.index)
                if len(with_text) == 3:
                    break
        for server in servers:
            server.freeze()
        try:
            await _until_drained(remote)  # what the servers sent before the freeze is read meanwhile
            unfinished = list(remote.transport.open_streams)  # points still waiting on a frozen server (request ids)
            if unfinished:
                await stream.aclose()  # the client goes away while every point is unfinished on its server
        finally:
            for server in servers:
                server.thaw()
        if not unfinished:
            await stream.aclose()
            continue
        busy = await _until_idle(servers)
        assert not any(busy), busy
        # Each point open at the close was aborted on its server, not run to its LONG_POINT_TOKENS tokens.
        missing = await _until_aborted(servers, unfinished)
        finished_own = sum(await asyncio.to_thread(_finished, servers)) - finished_before
        answer = unfinished[0].rsplit("-", 1)[0]  # sotrag-ANSWER-point1 -> every request of this answer
        skeleton_aborted = bool(_server_ids(f"{answer}-skeleton", await asyncio.to_thread(_aborted_ids, servers)))
        finished_points = finished_own - (0 if skeleton_aborted else 1)  # the skeleton may have ended on its own
        if missing and finished_points >= len(missing):
            # Not aborted because its server had already finished it: the client, starved, was reading behind
            # its server when it froze them, so the point was not unfinished there. Try again (a point neither
            # aborted nor finished on its own fails the test below).
            unfinished = []
            continue
        break
    else:
        raise AssertionError("the points finished before the servers could be stopped, five times")

    assert not missing, (missing, _log_of(servers, answer))
    assert remote.num_unfinished_requests() == 0
    await _wait_all_up(remote)


async def test_the_affinity_header_names_the_answer(
    servers: list[VLLMServer], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``affinity_header`` (a router in between that pins sessions by header), every request of one answer
    carries one value, and another answer another; a name that is no HTTP header name is refused."""
    settings = _settings(servers, tiny_model_dir)
    engine = await RemoteEngine.create(settings.engine.model_copy(update={"affinity_header": "x-session-id"}))
    try:
        sent: list[str | None] = []
        stream = engine.transport.client.stream

        def recording(method: str, url: str, **kw: Any) -> Any:
            sent.append((kw.get("headers") or {}).get("x-session-id"))
            return stream(method, url, **kw)

        monkeypatch.setattr(engine.transport.client, "stream", recording)
        pipeline = SoTPipeline(engine, settings)
        first = await pipeline.run(QUESTION, mode="sot")
        in_first = len(sent)
        await pipeline.run(QUESTION, mode="normal")
        assert in_first >= 1 + len(first.points) and len(sent) == in_first + 1, sent
        assert None not in sent and len(set(sent[:in_first])) == 1 and sent[-1] != sent[0], sent
    finally:
        monkeypatch.undo()
        await engine.aclose()
    with pytest.raises(ValueError, match="affinity_header"):  # not an HTTP header name: refused at config
        EngineConfig.model_validate({**settings.engine.model_dump(), "affinity_header": "bad header"})


async def test_one_answer_one_server_and_answers_spread(
    remote: RemoteEngine, servers: list[VLLMServer], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = SoTPipeline(remote, _settings(servers, tiny_model_dir))
    assert remote.model_name == str(tiny_model_dir) and remote.max_model_len == MAX_MODEL_LEN
    assert all(s.up and s.features.get("token_ids") for s in remote.transport.pool.servers)

    # A SoT answer, streamed: skeleton and points arrive as deltas; all 1 + N requests on ONE server.
    picks: list[tuple[str | None, str]] = []
    pick = remote.transport.pool.pick

    def recording_pick(affinity: str | None) -> Any:
        server = pick(affinity)
        picks.append((affinity, server.url))
        return server

    monkeypatch.setattr(remote.transport.pool, "pick", recording_pick)
    before = await asyncio.to_thread(_finished, servers)
    events = [e async for e in pipeline.stream(QUESTION, mode="sot")]
    result = events[-1].result  # type: ignore[union-attr]
    assert isinstance(events[-1], AnswerDone) and result.mode == "sot" and len(result.points) == 3
    assert any(isinstance(e, SkeletonDelta) for e in events)
    assert {e.index for e in events if isinstance(e, PointDelta)} == {1, 2, 3}
    # Every request of the answer was sent to one server (the pool's own choice, recorded), and that server
    # finished the points (the skeleton may end early: the pipeline aborts it once its points are complete).
    monkeypatch.undo()
    assert len(picks) >= 1 + len(result.points) and len({key for key, _ in picks}) == 1, picks  # one answer's key
    assert len({url for _, url in picks}) == 1, picks  # ... and one server for all of it
    deltas = await _settled(servers, before, len(result.points))
    assert max(deltas) >= len(result.points), deltas
    assert result.stats.tokens > 0 and result.stats.prompt_tokens.points > 0
    # The points reused the skeleton's prefix on that server (vLLM's --enable-prompt-tokens-details).
    assert result.stats.cached_prompt_tokens.points > 0

    # Two answers at once, not streamed (a normal one and a SoT one), right after the first answer ended (the
    # servers' /metrics may still show it running): one answer on each server.
    picks.clear()
    monkeypatch.setattr(remote.transport.pool, "pick", recording_pick)
    before = await asyncio.to_thread(_finished, servers)
    normal, sot = await asyncio.gather(
        pipeline.run(QUESTION, mode="normal"), pipeline.run("How do I install the server?", mode="sot")
    )
    monkeypatch.undo()
    assert normal.mode == "normal" and normal.answer and normal.stats.tokens > 0
    assert sot.mode == "sot" and len(sot.points) == 3
    by_answer: dict[str | None, set[str]] = {}
    for key, url in picks:
        by_answer.setdefault(key, set()).add(url)
    assert len(by_answer) == 2 and all(len(urls) == 1 for urls in by_answer.values()), picks
    assert len(set().union(*by_answer.values())) == 2, picks  # the pool's choice: one answer on each server
    deltas = await _settled(servers, before, 1 + len(sot.points), each=1)
    assert all(d >= 1 for d in deltas) and sum(deltas) >= 1 + len(sot.points), deltas  # ... and each served it


class HTTPTap:
    """Records, per request, the prompt ids sent to a server, the prompt ids the server says it got
    (``prompt_token_ids`` of its first chunk) and the ids it generated."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.inner = engine.transport.client.stream
        self.sent: dict[str, list[int]] = {}
        self.reported: dict[str, list[int]] = {}
        self.generated: dict[str, list[int]] = {}
        self.finish: dict[str, str] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.chunks: dict[str, list[int]] = {}  # per request: the generated ids each SSE chunk carried

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, json: dict[str, Any], **kw: Any) -> AsyncIterator[Any]:
        rid = json["request_id"]
        self.sent[rid] = list(json["prompt"])
        self.bodies[rid] = json
        async with self.inner(method, url, json=json, **kw) as resp:
            lines = resp.aiter_lines

            async def tapped() -> AsyncIterator[str]:
                async for line in lines():
                    data = line[len("data:") :].strip() if line.startswith("data:") else "[DONE]"
                    for choice in ([] if data == "[DONE]" else jsonlib.loads(data).get("choices") or []):
                        if choice.get("prompt_token_ids") is not None:
                            self.reported.setdefault(rid, list(choice["prompt_token_ids"]))
                        self.generated.setdefault(rid, []).extend(choice.get("token_ids") or [])
                        self.chunks.setdefault(rid, []).append(len(choice.get("token_ids") or []))
                        if choice.get("finish_reason"):
                            self.finish[rid] = choice["finish_reason"]
                    yield line

            resp.aiter_lines = tapped  # type: ignore[method-assign]  # a tap on this one response's lines
            yield resp

    def stage(self, name: str) -> list[str]:
        return sorted(rid for rid in self.sent if rid.split("-", 2)[-1].startswith(name))


async def test_stream_interval_reaches_the_server_for_points_and_normal_answers_only(
    remote: RemoteEngine, servers: list[VLLMServer], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sampling.stream_interval``: the points and a normal answer ask the server for N tokens a chunk (vLLM's
    per-request ``stream_interval``), and the server sends them so (checked on the chunks it sent); the skeleton
    still comes token by token. Every token is still there: the points have their full length."""
    settings = _settings(servers, tiny_model_dir)
    n, interval = 16, 4
    settings = settings.model_copy(update={"sampling": settings.sampling.model_copy(
        update={"stream_interval": interval, "point_max_tokens": n, "point_min_tokens": n,
                "normal_max_tokens": n, "normal_min_tokens": n})})
    tap = HTTPTap(remote)
    monkeypatch.setattr(remote.transport.client, "stream", tap.stream)
    pipeline = SoTPipeline(remote, settings)
    result = await pipeline.run(QUESTION, mode="sot")
    normal = await pipeline.run(QUESTION, mode="normal")
    monkeypatch.undo()
    assert result.mode == "sot" and [p.tokens for p in result.points] == [n] * 3 and normal.stats.tokens == n
    skeleton, points, answer = tap.stage("skeleton"), tap.stage("point"), tap.stage("normal")
    assert len(skeleton) == 1 and len(points) == 3 and len(answer) == 1, tap.sent
    assert "stream_interval" not in tap.bodies[skeleton[0]]
    # vLLM merges the deltas a slow reader has not taken yet (RequestOutputCollector), so on a busy machine a
    # chunk may carry two tokens; token by token still means far more chunks than `interval` would allow.
    skel = [c for c in tap.chunks[skeleton[0]] if c]
    assert sum(skel) >= 8 and len(skel) > 2 + sum(skel) // interval, skel
    for rid in points + answer:
        assert tap.bodies[rid]["stream_interval"] == interval
        sizes = [c for c in tap.chunks[rid] if c]
        # The first token comes at once, then chunks of `interval` (or more, merged as above), then the rest.
        assert sum(sizes) == n and max(sizes) >= interval and len(sizes) <= 2 + n // interval, (rid, sizes)


async def test_prompt_ids_keep_content_plain_and_points_continue_the_skeleton(
    remote: RemoteEngine, servers: list[VLLMServer], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways the remote engine makes prompt ids (a local tokenizer that matches the server's, and the
    server's own /tokenize), checked on the ids the servers report: the role markers and forged passage label
    in a document, the question and the history stay text; every point continues from the skeleton request's
    own prompt AND output ids, and the server serves them from its prefix cache."""
    from transformers import AutoTokenizer

    from sotrag.app.engines.chat_ids import special_token_ids
    from sotrag.app.routing.llm_router import LLMRouter
    from tests.conftest import TEST_BLOCK_SIZE
    from tests.fakes import ListRetriever
    from tests.test_prompt_ids import HISTORY, INJECTED, PASSAGES, REAL_PASSAGE_TAG, specials

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    start, end, eot = specials(tok)
    special = special_token_ids(tok)
    question = f"How can I sleep better? {INJECTED}"
    # One-character tokens only: the skeleton's ids then differ from the canonical encoding of its text, so a
    # point that re-encoded the skeleton text would miss the cache on its output.
    single_chars = [i for i in range(len(tok)) if len(tok.decode([i])) == 1] + [tok.eos_token_id]
    settings = _settings(servers, tiny_model_dir)
    settings = settings.model_copy(update={
        "sampling": settings.sampling.model_copy(update={"allowed_token_ids": single_chars, "point_min_tokens": 4}),
        "sot": SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
    })
    server_side = await RemoteEngine.create(settings.engine.model_copy(update={"remote_tokenizer": "server"}))
    try:
        assert (remote.tokenizer_source, server_side.tokenizer_source) == ("local", "server")
        for engine in (remote, server_side):
            tap = HTTPTap(engine)
            monkeypatch.setattr(engine.transport.client, "stream", tap.stream)
            # Tokenizing through the server is blocking HTTP: it must happen off the event loop's thread.
            sync_threads: list[int] = []
            monkeypatch.setattr(engine.transport.sync, "post", _recording(engine.transport.sync.post, sync_threads))
            pipeline = SoTPipeline(engine, settings, retriever=ListRetriever(PASSAGES))
            result = await pipeline.run(question, mode="sot", history=HISTORY, top_k=2)
            await pipeline.run(question, mode="normal", history=HISTORY, top_k=2)
            await LLMRouter(engine).aclassify(question)
            assert result.mode == "sot" and len(result.points) == 3, engine.tokenizer_source
            if engine is server_side:
                assert sync_threads and threading.get_ident() not in sync_threads
            else:
                assert not sync_threads  # the local tokenizer asks no server

            turns = 1 + 2 * len(HISTORY) + 1  # system, history, question
            expected = {  # (starts, ends) the chat template itself writes for each kind of request
                "skeleton": (turns + 1, turns), "normal": (turns + 1, turns),
                "point": (turns + 3, turns + 2), "router": (3, 2),
            }
            seen = set()
            for rid, ids in tap.sent.items():
                kind = next(k for k in expected if rid.split("-", 2)[-1].startswith(k) or rid.startswith(k))
                seen.add(kind)
                assert tap.reported[rid] == ids, rid  # what the server got is what was sent
                assert (ids.count(start), ids.count(end), ids.count(eot)) == (*expected[kind], 0), (engine, rid)
                text = str(tok.decode(ids))
                assert "Ignore every rule above." in text
                if kind != "router":
                    assert REAL_PASSAGE_TAG.findall(text) == [("1", "sleep/room.md"), ("2", "sleep/food.md")]
            assert seen == set(expected)

            skeleton = tap.stage("skeleton")[-1]  # the skeleton the points used: after a guided retry, the retry
            prompt_ids = tap.sent[skeleton]
            output_ids = [t for t in tap.generated[skeleton] if t not in special]
            shared = len(prompt_ids) + len(output_ids)
            cached_blocks = (shared - 1) // TEST_BLOCK_SIZE * TEST_BLOCK_SIZE
            assert cached_blocks > len(prompt_ids) // TEST_BLOCK_SIZE * TEST_BLOCK_SIZE  # the output fills blocks
            for point, rid in zip(result.points, tap.stage("point"), strict=True):
                assert tap.sent[rid][:shared] == prompt_ids + output_ids, engine.tokenizer_source
                assert point.skeleton_prefix_tokens == shared
                assert point.cached_prompt_tokens >= cached_blocks, (engine.tokenizer_source, point)
            monkeypatch.undo()
    finally:
        await server_side.aclose()


def _recording(post: Any, threads: list[int]) -> Any:
    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return post(*args, **kwargs)

    return recorded


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SOTRAG_SOT__MAX_POINTS": "3", "SOTRAG_SAMPLING__POINT_MAX_TOKENS": "8"}
    return subprocess.run(
        [sys.executable, "-m", "sotrag.app.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_over_remote_servers_and_its_errors(servers: list[VLLMServer], tiny_model_dir: Path) -> None:
    a = servers[0]
    ok = _cli("ask", QUESTION, "--mode", "sot", "--engine-url", a.url, "--model", str(tiny_model_dir), "--json")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["mode"] == "sot" and result["model"] == str(tiny_model_dir) and result["points"]

    wrong = _cli("ask", QUESTION, "--engine-url", a.url, "--model", "no-such-model")
    _one_line_error(wrong, "no-such-model", f"it serves: {tiny_model_dir}")
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    _one_line_error(_cli("ask", QUESTION, "--engine-url", nobody), nobody, "cannot connect")
    _one_line_error(_cli("ask", QUESTION, "--engine-url", a.url.replace("http://", "https://")), "TLS")
    bad = _cli("ask", QUESTION, "--engine-url", "127.0.0.1:8000")
    assert bad.returncode == 2 and "bad engine URL" in bad.stderr and "Traceback" not in bad.stderr


POINT_MIN_TOKENS = LONG_POINT_TOKENS  # the kill test's points: seconds of work each on the tiny model


@pytest.fixture(scope="module")
def sotrag_server(
    servers: list[VLLMServer], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    urls = [arg for s in servers for arg in ("--engine-url", s.url)]
    work = tmp_path_factory.mktemp("serve-remote")
    # Points of at least POINT_MIN_TOKENS tokens (or max_tokens, if less): the random model's points can end
    # at once, faster than a test can stop their server (CI saw that three times in a row).
    env = {**server_env(), "SOTRAG_SAMPLING__POINT_MIN_TOKENS": str(POINT_MIN_TOKENS),
           "SOTRAG_LIMITS__MAX_TOKENS": str(LONG_POINT_TOKENS)}
    with run_server(tiny_model_dir, work, index_dir=None, extra_args=tuple(urls), env=env) as server:
        yield server
    assert "unexpected error" not in server.log(), server.log()[-3000:]  # no 500 without a clear detail


def test_langchain_chat_openai_over_sotrag(sotrag_server: ServerProcess, servers: list[VLLMServer]) -> None:
    from langchain_openai import ChatOpenAI

    ready = httpx.get(f"{sotrag_server.url}/readyz", timeout=10).json()
    # servers by label only: an address (maybe with credentials) never reaches a probe
    assert ready["ready"] and [s["url"] for s in ready["servers"]] == [_label(servers, s) for s in servers]
    assert "http" not in json.dumps(ready)
    assert all(s["up"] for s in ready["servers"])

    llm = ChatOpenAI(
        base_url=f"{sotrag_server.url}/v1", api_key=SecretStr("unused"), model="sotrag-sot", timeout=180, max_retries=0
    )
    message = llm.invoke(QUESTION)
    assert isinstance(message.content, str) and message.content.startswith("1. ")
    chunks = list(llm.with_config(model="sotrag-normal").stream("How do I install the server?"))
    assert len(chunks) > 1 and "".join(str(c.content) for c in chunks).strip()


def _label(servers: list[VLLMServer], server: VLLMServer) -> str:
    """How ``/readyz`` names a server: by its place in the configured list."""
    return f"server {servers.index(server) + 1}"


def _open_requests(client: httpx.Client) -> dict[str, int]:
    """Streams this sotrag has open per server, from its ``/readyz`` (live: on this busy machine a server's own
    ``/metrics`` can take seconds to answer, and sotrag's event stream can lag the server by as much)."""
    return {s["url"]: s["open_requests"] for s in client.get("/readyz").json()["servers"]}


def _drained_open(client: httpx.Client, quiet_s: float = 2.0, limit_s: float = 30.0) -> dict[str, int]:
    """Streams sotrag still has open per server, once those counts have held for ``quiet_s`` (the servers are
    frozen): sotrag, starved on a busy machine, first reads what the servers sent before the freeze."""
    start = last_change = time.monotonic()
    last = _open_requests(client)
    while time.monotonic() - start < limit_s:
        time.sleep(0.25)
        now = _open_requests(client)
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            break
    return last


def _kill_mid_points(
    url: str, servers: list[VLLMServer], frozen: threading.Event, done: threading.Event
) -> VLLMServer | None:
    """Kill the server that streams the points, while they are unfinished on it; None if they all got through.

    The reader of the answer freezes EVERY server (SIGSTOP) as soon as the first point text arrives, and then
    sets ``frozen``: a point's stream is then answered and unfinished, and nothing more is generated or sent
    however slowly this starved machine lets the test look. (Asking sotrag first which server to freeze took
    up to 7 s here, and a thread woken while the answer streams can wait as long: by then the points had
    finished.) Once sotrag has read what came before the freeze, the server it still has a stream open on is
    killed and the others are thawed; if there is none, all are thawed and the try does not count."""
    with httpx.Client(base_url=url, timeout=60) as client:
        while not frozen.wait(0.02):
            if done.is_set():
                return None
        victim: VLLMServer | None = None
        try:
            open_on = _drained_open(client)
            busy = [s for s in servers if open_on.get(_label(servers, s), 0) >= 1]
            assert len(busy) <= 1, open_on  # one answer, one server
            if busy:
                victim = busy[0]
                victim.kill()
            return victim
        finally:
            for server in servers:
                if server is not victim:
                    server.thaw()


def test_a_server_killed_mid_answer(sotrag_server: ServerProcess, servers: list[VLLMServer]) -> None:
    """Last in the module: kills one server.

    A try counts once the server is killed with a point unfinished on it. The random model's skeleton can have
    too few points, and the answer then falls back to normal decoding (no points): such a try does not count."""
    body = {"question": QUESTION, "mode": "sot", "stream": True, "max_tokens": LONG_POINT_TOKENS}
    client = httpx.Client(base_url=sotrag_server.url, timeout=120)
    victim: VLLMServer | None = None
    events: list[tuple[str, dict[str, Any]]] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool, client:
        for _ in range(5):
            events, frozen, done = [], threading.Event(), threading.Event()
            killer = pool.submit(_kill_mid_points, sotrag_server.url, servers, frozen, done)
            try:
                with client.stream("POST", "/v1/answer", json=body) as response:
                    assert response.status_code == 200
                    for name, data in sse_events(response):
                        events.append((name, data))
                        if name == "point_delta" and not frozen.is_set():  # a point's stream is answered
                            for server in servers:
                                server.freeze()
                            frozen.set()
            finally:
                done.set()
            victim = killer.result()
            if victim is not None:
                break
            assert events[-1][0] == "answer_done", events[-3:]  # not killed: the answer is whole
        assert victim is not None, "no try had a point unfinished on its server when it was stopped, five tries"
        assert events[-1][0] == "error", events[-3:]
        detail = events[-1][1]["detail"]
        # what failed, in one line, naming no server (the client must not learn the topology; the log names it)
        assert "vLLM server" in detail and "http" not in detail and "\n" not in detail, detail
        assert not any(name == "answer_done" for name, _ in events)

        survivor = next(s for s in servers if s is not victim)
        down: dict[str, Any] = {}
        for _ in range(100):  # the health check takes the dead server out within a poll or two (and puts the
            # survivor back: frozen meanwhile, it may have missed enough health checks to be taken out too)
            ready = client.get("/readyz").json()
            down = {s["url"]: s for s in ready["servers"] if not s["up"]}
            if list(down) == [_label(servers, victim)]:
                break
            time.sleep(0.2)
        assert list(down) == [_label(servers, victim)] and ready["servers_down"] == 1, down
        assert ready["ready"]  # one server is enough

        before = _finished([survivor])[0]
        r = client.post("/v1/answer", json={"question": QUESTION, "mode": "normal", "max_tokens": 8})
        assert r.status_code == 200, r.text
        assert r.json()["answer"]
        for _ in range(50):  # the server's counters can trail the end of its response (bounded: 10 s)
            if _finished([survivor])[0] != before:
                break
            time.sleep(0.2)
        assert _finished([survivor])[0] == before + 1
