"""Faults and load against ONE real ``sotrag serve`` process (tiny model, real vLLM, a real index, API + admin keys):

1. its start: ``/healthz`` answers at every moment (polled with a short timeout) and ``/readyz`` says "starting";
2. a short version of ``benchmarks/load.py``: zero 5xx, every request completes or gets a clean 429, no engine
   request left;
3. schemathesis against its OpenAPI schema (bounded): zero 5xx, responses as documented, and without the admin key
   its stateful phase cannot delete the indexed document;
4. last, the engine-core process is killed mid-answer: the stream ends with an error naming no internals, /readyz
   turns 503 with the reason, ``sotrag_ready`` 0, new answers 503, and the server exits with code 3 so that its
   supervisor restarts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import server_env, spawn_server, stop_server

pytestmark = pytest.mark.engine

KEY, ADMIN = "fault-key-1-0123456789", "fault-admin-2-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parent.parent
DOCS = Path(__file__).parent / "data" / "retrieval_docs"
HEALTH_TIMEOUT_S = 2.0  # generous for a busy shared 2-core machine; a blocked loop (27 s before the fix) fails it
ENGINE_DIED_EXIT_CODE = 3


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health: list[tuple[float, int | None, float]] = field(default_factory=list)  # (at, status, latency)
    ready_states: list[dict[str, Any]] = field(default_factory=list)
    doc_id: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("faults")
    env = server_env()
    env.update({
        "SOTRAG_API_KEY": KEY,
        "SOTRAG_ADMIN_API_KEY": ADMIN,
        "SOTRAG_LIMITS__MAX_CONCURRENT_ANSWERS": "4",
        "SOTRAG_LIMITS__MAX_QUEUED_ANSWERS": "8",
        "SOTRAG_LIMITS__MAX_TOKENS": "32",  # schemathesis answers stay short
        "SOTRAG_SERVER__ENGINE_DEATH_GRACE_S": "4",
    })
    started = spawn_server(tiny_model_dir, work, index_dir=work / "index", env=env)
    s = Server(started.url, started.process, started.log_path)
    process = started.process
    try:
        _watch_start(s)
        yield s
    finally:
        stop_server(process)


def _watch_start(s: Server) -> None:
    """Poll /healthz (short timeout) and /readyz from the first moment the port is open until ready."""
    t0 = time.monotonic()
    listening = False
    with httpx.Client(base_url=s.url) as c:
        while time.monotonic() - t0 < 300:
            if s.process.poll() is not None:
                raise RuntimeError(f"sotrag serve exited with {s.process.returncode}:\n{s.log()[-4000:]}")
            start = time.perf_counter()
            try:
                status: int | None = c.get("/healthz", timeout=HEALTH_TIMEOUT_S).status_code
                listening = True
            except httpx.ConnectError:
                time.sleep(0.1)
                continue  # not listening yet: nothing to probe
            except httpx.HTTPError:
                status = None
            s.health.append((time.monotonic() - t0, status, time.perf_counter() - start))
            if listening:
                try:
                    ready = c.get("/readyz", timeout=HEALTH_TIMEOUT_S)
                    s.ready_states.append({"status": ready.status_code, **ready.json()})
                    if ready.status_code == 200:
                        return
                except httpx.HTTPError:
                    s.ready_states.append({"status": None})
            time.sleep(0.2)
    raise RuntimeError(f"sotrag serve was not ready after 300 s:\n{s.log()[-4000:]}")


def test_health_answers_during_the_whole_engine_start(server: Server) -> None:
    latencies = sorted(h[2] for h in server.health if h[1] == 200)
    (ROOT / "tests" / "artifacts").mkdir(parents=True, exist_ok=True)
    (ROOT / "tests" / "artifacts" / "healthz_during_start.json").write_text(json.dumps({
        "probes": len(server.health), "start_s": round(server.health[-1][0], 1) if server.health else None,
        "p50_s": latencies[len(latencies) // 2] if latencies else None,
        "p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "max_s": latencies[-1] if latencies else None, "over_100ms": sum(1 for x in latencies if x > 0.1),
        "failed": [h for h in server.health if h[1] != 200], "load_average": os.getloadavg(),
    }, indent=1))
    assert len(server.health) >= 10, server.health  # probed across the start, not just at the end
    late = [h for h in server.health if h[1] != 200]
    assert not late, f"/healthz did not answer within {HEALTH_TIMEOUT_S} s at: {late}"
    starting = [r for r in server.ready_states if r.get("engine") == "starting"]
    assert starting and all(r["status"] == 503 and "starting" in r["detail"] for r in starting)
    assert all(r["status"] is not None for r in server.ready_states)
    assert server.ready_states[-1]["status"] == 200
    ready = server.ready_states[-1]
    assert "/" not in json.dumps(ready), ready  # neither the model folder nor the index folder


def test_short_load_no_5xx_and_nothing_left(server: Server) -> None:
    sys.path.insert(0, str(ROOT))
    import asyncio

    from benchmarks.load import run_load

    report = asyncio.run(run_load(server.url, clients=24, duration_s=12, pid=server.process.pid, api_key=KEY,
                                  warmup=1))
    summary = report.summary()
    assert summary["server_errors_5xx"] == 0, summary
    assert summary["failed"] == 0, summary["failures"]
    assert summary["completed"] > 0 and summary["rejected_429"] > 0, summary  # load was past the limits
    assert summary["engine_unfinished_requests_at_end"] == 0, summary
    assert all(p["not_200"] == 0 for p in summary["probes"].values()), summary["probes"]


def test_schemathesis_finds_no_5xx_and_cannot_delete_without_the_admin_key(
    server: Server, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        added = c.post("/v1/documents", headers={"authorization": f"Bearer {ADMIN}"},
                       files={"files": ("roses.md", (DOCS / "garden" / "roses.md").read_bytes())})
        assert added.status_code == 201, added.text
        before = c.get("/v1/documents", headers=AUTH).json()["documents"]
    report = tmp_path / "schemathesis.json"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--header", f"Authorization: Bearer {KEY}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--max-examples", "8", "--max-time", "90", "--seed", "11", "--no-shrink",
        "--request-timeout", "60", "--suppress-health-check", "all", "--warnings", "off",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**os.environ, "NO_COLOR": "1"})
    out = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, out
    assert "Server error" not in out
    with httpx.Client(base_url=server.url, timeout=60) as c:
        after = c.get("/v1/documents", headers=AUTH).json()["documents"]
    assert {d["doc_id"] for d in before} <= {d["doc_id"] for d in after}, out  # nothing deleted without the key
    server.doc_id = before[0]["doc_id"]
    (ROOT / "tests" / "artifacts").mkdir(parents=True, exist_ok=True)
    (ROOT / "tests" / "artifacts" / "schemathesis.txt").write_text(out)


def _engine_core(pid: int) -> Any:
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        try:
            text = " ".join([child.name(), *child.cmdline()])
        except psutil.Error:
            continue
        if "EngineCore" in text:
            return child
    raise AssertionError("no engine-core process found under the server")


INTERNALS = ("stack trace", "EngineCore", "Traceback", "EngineDeadError", "vllm", "File \"")


def test_engine_death_is_reported_and_the_server_exits_for_its_supervisor(server: Server) -> None:
    core = _engine_core(server.process.pid)
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as c:
        events: list[tuple[str, str]] = []
        body = {"question": "How should I prune and feed roses?", "mode": "sot", "stream": True}
        with c.stream("POST", "/v1/answer", json=body) as r:
            assert r.status_code == 200
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((event, line[len("data: "):]))
                    if event == "skeleton_delta" and len(events) == 2:
                        core.send_signal(signal.SIGKILL)  # mid-answer: the skeleton is being written
        kinds = [e for e, _ in events]
        assert "skeleton_delta" in kinds and kinds[-1] == "error", kinds
        detail = json.loads(events[-1][1])["detail"]
        assert "engine" in detail and not any(word in detail for word in INTERNALS), detail

        deadline = time.monotonic() + 20
        ready = c.get("/readyz")
        while ready.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False and "stopped" in ready.json()["detail"]
        assert "sotrag_ready 0.0" in c.get("/metrics").text
        for payload in (body, {**body, "stream": False}):
            r = c.post("/v1/answer", json=payload)
            assert r.status_code == 503, r.text
            assert "engine" in r.json()["detail"] and not any(w in r.json()["detail"] for w in INTERNALS)
        oa = c.post("/v1/chat/completions", json={"model": "sotrag-sot",
                                                  "messages": [{"role": "user", "content": "hi"}]})
        assert oa.status_code == 503 and "engine" in oa.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200  # the process is alive until it exits
    code = server.process.wait(timeout=90)
    assert code == ENGINE_DIED_EXIT_CODE, server.log()[-3000:]
