"""Load test: N concurrent streaming clients against ``sotrag serve`` on loopback, for a bounded time.

    python benchmarks/load.py --tiny [--clients 128] [--duration 120] [--out benchmarks/results/load_cpu.json]
    python benchmarks/load.py --tiny --corpus README.md --corpus docs     # retrieval on: an index of these files
    python benchmarks/load.py --model PATH ...            # start `sotrag serve` over that model
    python benchmarks/load.py --url http://127.0.0.1:8000 [--pid PID] [--api-key KEY]   # a running server

Each client loops until the time is up: a SoT stream on ``/v1/answer``, a normal-decoding stream, or an OpenAI
``/v1/chat/completions`` stream, in turn; a share of them (``--disconnect-share``) leaves after the first text.
The requests carry the sampling options a client can send, in turn: none, a temperature, and (OpenAI route) a
temperature with a seed and a top_p. With ``--corpus`` the server answers over an index built from those files
first (``sotrag ingest``), so prompts are retrieval-sized. A 429 is a clean refusal: the client waits its
``Retry-After`` (at most 2 s) and goes on. Meanwhile a prober, in a process of its own, times ``/healthz`` and
``/readyz`` every 0.25 s; a started server is also probed every 50 ms from its start until 10 s after it turned
ready (the moment its startup heap is frozen). It reports completed / rejected / failed counts, p50/p99 latency
and time to first byte, the probes' latency, engine deaths, the server's resident memory (its process and the
engine's) after a warm-up and after the load, and whether the engine holds any request at the end; and it
writes all of it as JSON. Only loopback addresses are accepted: this is not a tool to load someone's server.

Acceptance (issues #11 and #23, tiny model on a 2-core CPU): 64 and 128 clients, zero 5xx, every request
completes or gets a clean 429, no engine death, no engine request left at the end, resident memory growth under
10 %, probes p99 under 100 ms (under load and at start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How should I prune and feed roses?",
    "What are tips to sleep better?",
    "How do I add documents to sotrag?",
    "What makes a good sourdough starter?",
    "How can I improve my time management skills?",
]
KINDS = ("sot", "normal", "openai")
PROBE_P99_LIMIT_S = 0.100


@dataclass
class Outcome:
    kind: str
    status: int | None
    result: str  # completed | disconnected | rejected | failed
    latency_s: float
    ttfb_s: float | None = None
    detail: str = ""


@dataclass
class Probe:
    route: str
    status: int | None
    latency_s: float
    at_s: float


@dataclass
class LoadReport:
    config: dict[str, Any]
    machine: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    startup_probes: list[Probe] = field(default_factory=list)
    rss_before: dict[str, int] = field(default_factory=dict)
    rss_after: dict[str, int] = field(default_factory=dict)
    end_state: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        results = Counter(o.result for o in self.outcomes)
        statuses = Counter(str(o.status) for o in self.outcomes)
        done = [o for o in self.outcomes if o.result == "completed"]
        server_errors = sum(1 for o in self.outcomes if o.status is not None and o.status >= 500)
        probe_stats = {}
        for route in ("/healthz", "/readyz"):
            lat = [p.latency_s for p in self.probes if p.route == route and p.status == 200]
            bad = sum(1 for p in self.probes if p.route == route and p.status != 200)
            probe_stats[route] = {**_percentiles(lat), "count": len(lat), "not_200": bad}
        rss_growth = None
        if self.rss_before.get("server") and self.rss_after.get("server"):
            rss_growth = (self.rss_after["server"] - self.rss_before["server"]) / self.rss_before["server"]
        by_kind = {
            k: dict(Counter(o.result for o in self.outcomes if o.kind == k)) for k in KINDS
        }
        unfinished = self.end_state.get("engine_unfinished_requests")
        startup = [p.latency_s for p in self.startup_probes if p.status is not None]
        probe_stats["/healthz at start"] = {**_percentiles(startup), "count": len(startup),
                                            "not_200": sum(1 for p in self.startup_probes if p.status is None)}
        died = self.end_state.get("engine") == "failed" or self.end_state.get("server_exited") is True
        summary = {
            "requests": len(self.outcomes),
            "completed": results["completed"],
            "disconnected_early": results["disconnected"],
            "rejected_429": results["rejected"],
            "failed": results["failed"],
            "by_kind": by_kind,
            "statuses": dict(statuses),
            "server_errors_5xx": server_errors,
            "latency_s": _percentiles([o.latency_s for o in done]),
            "ttfb_s": _percentiles([o.ttfb_s for o in done if o.ttfb_s is not None]),
            "probes": probe_stats,
            "rss_growth": rss_growth,
            "engine_unfinished_requests_at_end": unfinished,
            "engine_deaths": int(died),
            "failures": [asdict(o) for o in self.outcomes if o.result == "failed"][:20],
        }
        summary["acceptance"] = {
            "zero_5xx": server_errors == 0,
            "every_request_completed_or_429": results["failed"] == 0,
            "no_engine_request_left": unfinished == 0,
            "rss_growth_under_10pct": rss_growth is not None and rss_growth < 0.10,
            "no_engine_death": not died,
            "probes_p99_under_100ms": all(
                p["p99"] is not None and p["p99"] < PROBE_P99_LIMIT_S
                for route, p in probe_stats.items() if p["count"] or route != "/healthz at start"
            ),
        }
        return summary


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 4), "p99": round(p99, 4), "max": round(ordered[-1], 4)}


def machine_state() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def rss_of(pid: int | None) -> dict[str, int]:
    """Resident bytes of the server process and, separately, of its children (the engine core and workers)."""
    if pid is None:
        return {}
    import psutil

    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        return {
            "server": int(proc.memory_info().rss),
            "engine": sum(int(c.memory_info().rss) for c in children if c.is_running()),
        }
    except psutil.Error:
        return {}


# -- the clients -------------------------------------------------------------------------------------------


def sampling_for(kind: str, turn: int) -> dict[str, Any]:
    """The sampling options a client can send, in turn: none, a temperature, and a seed with top_p (OpenAI)."""
    choice = turn % 3
    if choice == 0:
        return {}
    if choice == 1 or kind != "openai":
        return {"temperature": 0.7}
    return {"temperature": 1.0, "seed": 1000 + turn, "top_p": 0.9}


def request_for(kind: str, question: str, max_tokens: int | None, turn: int = 0) -> tuple[str, dict[str, Any]]:
    extra: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}
    extra.update(sampling_for(kind, turn))
    if kind == "openai":
        return "/v1/chat/completions", {
            "model": "sotrag-sot", "stream": True, "messages": [{"role": "user", "content": question}], **extra,
        }
    return "/v1/answer", {"question": question, "mode": kind, "stream": True, **extra}


async def one_request(
    client: httpx.AsyncClient, kind: str, question: str, *, disconnect: bool, max_tokens: int | None, turn: int = 0
) -> Outcome:
    path, body = request_for(kind, question, max_tokens, turn)
    start = time.perf_counter()
    ttfb: float | None = None
    try:
        async with client.stream("POST", path, json=body) as r:
            if r.status_code == 429:
                await r.aread()
                return Outcome(kind, 429, "rejected", time.perf_counter() - start,
                               detail=r.headers.get("retry-after", ""))
            if r.status_code != 200:
                text = (await r.aread()).decode(errors="replace")[:200]
                return Outcome(kind, r.status_code, "failed", time.perf_counter() - start, detail=text)
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if ttfb is None:
                    ttfb = time.perf_counter() - start
                if event == "error" or data.startswith('{"error"'):
                    return Outcome(kind, 200, "failed", time.perf_counter() - start, ttfb, detail=data[:200])
                texty = event in ("point_delta", "answer_delta") or (kind == "openai" and '"content":"' in data
                                                                       and '"content":""' not in data)
                if disconnect and texty:
                    return Outcome(kind, 200, "disconnected", time.perf_counter() - start, ttfb)
                if event == "answer_done" or data == "[DONE]":
                    return Outcome(kind, 200, "completed", time.perf_counter() - start, ttfb)
            return Outcome(kind, 200, "failed", time.perf_counter() - start, ttfb, detail="stream ended early")
    except httpx.HTTPError as exc:
        return Outcome(kind, None, "failed", time.perf_counter() - start, ttfb, detail=f"{type(exc).__name__}: {exc}")


async def client_loop(
    n: int, client: httpx.AsyncClient, deadline: float, report: LoadReport, disconnect_share: float,
    max_tokens: int | None,
) -> None:
    i = 0
    every = max(1, round(1 / disconnect_share)) if disconnect_share > 0 else 0
    while time.monotonic() < deadline:
        kind = KINDS[(n + i) % len(KINDS)]
        disconnect = bool(every) and (n * 7 + i) % every == 0
        outcome = await one_request(client, kind, QUESTIONS[(n + i) % len(QUESTIONS)], disconnect=disconnect,
                                    max_tokens=max_tokens, turn=n + i // len(KINDS))
        report.outcomes.append(outcome)
        i += 1
        if outcome.result == "rejected":
            retry = float(outcome.detail) if outcome.detail.isdigit() else 1.0
            await asyncio.sleep(min(retry, 2.0))
        elif outcome.result == "failed":
            await asyncio.sleep(0.5)


def probe_process(url: str, stop: Any, out: str, headers: dict[str, str]) -> None:
    """Time the probes from a process of its own: the clients' busy event loop must not count as server latency."""
    t0 = time.monotonic()
    with httpx.Client(base_url=url, headers=headers) as client, open(out, "w") as f:
        while not stop.is_set():
            for route in ("/healthz", "/readyz"):
                start = time.perf_counter()
                try:
                    status: int | None = client.get(route, timeout=10).status_code
                except httpx.HTTPError:
                    status = None
                probe = Probe(route, status, time.perf_counter() - start, time.monotonic() - t0)
                f.write(json.dumps(asdict(probe)) + "\n")
            stop.wait(0.25)


async def wait_idle(client: httpx.AsyncClient, timeout_s: float) -> dict[str, Any]:
    """The server's /readyz once no answer is in flight and the engine holds no request (or when time is up)."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            state = (await client.get("/readyz", timeout=10)).json()
            if not state.get("answers_in_flight") and not state.get("answers_queued") \
                    and state.get("engine_unfinished_requests") == 0:
                return state
        await asyncio.sleep(0.25)
    return state


async def run_load(
    url: str, *, clients: int, duration_s: float, pid: int | None = None, api_key: str | None = None,
    disconnect_share: float = 0.2, max_tokens: int | None = None, warmup: int = 3,
) -> LoadReport:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"load.py only loads servers on loopback (127.0.0.1), not {host}")
    report = LoadReport(
        config={"url": url, "clients": clients, "duration_s": duration_s, "disconnect_share": disconnect_share,
                "max_tokens": max_tokens},
        machine=machine_state(),
    )
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    # Idle connections expire on the client before the server's keep-alive ends: no request on a closing socket.
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8, keepalive_expiry=2.0)
    timeout = httpx.Timeout(duration_s + 300, connect=30)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        for i in range(warmup):  # warm: prefix cache, tokenizer, first-request allocations
            await one_request(client, KINDS[i % len(KINDS)], QUESTIONS[0], disconnect=False, max_tokens=max_tokens)
        await wait_idle(client, 30)
        report.rss_before = rss_of(pid)
        t0 = time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        with tempfile.TemporaryDirectory(prefix="sotrag-load-probes-") as tmp:
            probes_file = str(Path(tmp) / "probes.jsonl")
            probing = ctx.Process(target=probe_process, args=(url, stop, probes_file, headers), daemon=True)
            probing.start()
            deadline = t0 + duration_s
            await asyncio.gather(*(client_loop(n, client, deadline, report, disconnect_share, max_tokens)
                                   for n in range(clients)))
            report.end_state = await wait_idle(client, 60)
            if pid is not None:
                import psutil

                report.end_state["server_exited"] = not psutil.pid_exists(pid) or psutil.Process(pid).status() \
                    == psutil.STATUS_ZOMBIE
            stop.set()
            probing.join(30)
            with open(probes_file) as f:
                report.probes = [Probe(**json.loads(line)) for line in f if line.strip()]
        report.rss_after = rss_of(pid)
    report.machine["load_average_after"] = machine_state()["load_average"]
    report.config["wall_s"] = round(time.monotonic() - t0, 1)
    return report


# -- a server to load ----------------------------------------------------------------------------------------


def tiny_server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test suite's server settings (tests/serving.py): seeded, short forced answers on the tiny model."""
    sys.path.insert(0, str(ROOT))
    from tests.serving import server_env

    env = server_env()
    env.update(extra or {})
    return env


def build_index(paths: list[str], env: dict[str, str], directory: Path) -> None:
    """An index of ``paths`` (``sotrag ingest``), for a load with retrieval on."""
    cmd = [sys.executable, "-m", "sotrag.app.cli", "ingest", *paths, "--index", str(directory)]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"sotrag ingest failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    print(f"index of {' '.join(paths)} built in {time.monotonic() - start:.0f} s", file=sys.stderr)


def probe_startup(url: str, stop: threading.Event, out: list[Probe]) -> None:
    """``/healthz`` every 50 ms from the server's start until ``stop``: the moment it turns ready (its startup heap
    frozen) included. Refused connections before it listens are not counted."""
    listening = False
    with httpx.Client(base_url=url) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                status: int | None = client.get("/healthz", timeout=10).status_code
                listening = True
            except httpx.HTTPError:
                status = None
            if listening:
                out.append(Probe("/healthz", status, time.perf_counter() - start, time.monotonic()))
            time.sleep(0.05)


@contextlib.contextmanager
def started_server(
    model: str, env: dict[str, str], args: list[str], corpus: list[str] | None = None,
    startup_probes: list[Probe] | None = None,
) -> Iterator[tuple[str, int]]:
    sys.path.insert(0, str(ROOT))
    from tests.serving import free_port

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="sotrag-load-", suffix=".log", delete=False)  # noqa: SIM115
    index_dir = tempfile.TemporaryDirectory(prefix="sotrag-load-index-")
    if corpus:
        build_index(corpus, env, Path(index_dir.name) / "index")
        where = ["--index", str(Path(index_dir.name) / "index")]
    else:
        where = ["--no-index"]
    cmd = [sys.executable, "-m", "sotrag.app.cli", "serve", "--model", model, "--port", str(port), *where, *args]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    probes = startup_probes if startup_probes is not None else []
    prober = threading.Thread(target=probe_startup, args=(url, stop, probes), daemon=True)
    prober.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"sotrag serve exited with {proc.returncode}; log: {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise SystemExit(f"sotrag serve was not ready after 300 s; log: {log.name}")
        ready_at = time.monotonic()
        time.sleep(10)  # the startup prober goes on for a while past "ready"
        stop.set()
        prober.join(15)
        for probe in probes:  # seconds from the moment /readyz first said ready (negative: before)
            probe.at_s = round(probe.at_s - ready_at, 3)
        yield url, proc.pid
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        index_dir.cleanup()
        print(f"server log: {log.name}", file=sys.stderr)


def print_table(summary: dict[str, Any], report: LoadReport) -> None:
    c = report.config
    print(f"\nload: {c['clients']} clients for {c['duration_s']:.0f} s against {c['url']}"
          f" (load average {report.machine['load_average']} -> {report.machine.get('load_average_after')})")
    rows = [
        ("requests", summary["requests"]),
        ("completed", summary["completed"]),
        ("disconnected early (on purpose)", summary["disconnected_early"]),
        ("rejected (429)", summary["rejected_429"]),
        ("failed", summary["failed"]),
        ("5xx", summary["server_errors_5xx"]),
        ("latency p50 / p99 (s)", f"{summary['latency_s']['p50']} / {summary['latency_s']['p99']}"),
        ("first byte p50 / p99 (s)", f"{summary['ttfb_s']['p50']} / {summary['ttfb_s']['p99']}"),
    ]
    for route, p in summary["probes"].items():
        rows.append((f"{route} p50 / p99 / max (s)", f"{p['p50']} / {p['p99']} / {p['max']} ({p['count']} probes)"))
    g = summary["rss_growth"]
    before, after = report.rss_before, report.rss_after
    if before and after:
        rows.append(("server RSS before / after (MiB)",
                     f"{before['server'] / 2**20:.0f} / {after['server'] / 2**20:.0f} ({g:+.1%})"))
        rows.append(("engine RSS before / after (MiB)",
                     f"{before['engine'] / 2**20:.0f} / {after['engine'] / 2**20:.0f}"))
    rows.append(("engine requests left at the end", summary["engine_unfinished_requests_at_end"]))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("  acceptance: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in summary["acceptance"].items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server on loopback")
    where.add_argument("--model", help="start `sotrag serve` over this model (the test suite's settings)")
    where.add_argument("--tiny", action="store_true", help="start it over the tiny random-weight test model")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for its memory")
    ap.add_argument("--api-key")
    ap.add_argument("--clients", type=int, default=128)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds during which clients start requests")
    ap.add_argument("--disconnect-share", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=None, help="per request (default: the server's)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `sotrag serve` argument (repeat)")
    ap.add_argument("--corpus", action="append", default=[],
                    help="a file or folder to index and answer over (repeat): retrieval on; default: no index")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_cpu.json")
    a = ap.parse_args()

    def go(url: str, pid: int | None) -> LoadReport:
        return asyncio.run(run_load(url, clients=a.clients, duration_s=a.duration, pid=pid, api_key=a.api_key,
                                    disconnect_share=a.disconnect_share, max_tokens=a.max_tokens))

    if a.url:
        report = go(a.url, a.pid)
    else:
        with tempfile.TemporaryDirectory(prefix="sotrag-load-model-") as tmp:
            model = a.model
            if a.tiny:
                sys.path.insert(0, str(ROOT))
                from tests.tiny_model import build_tiny_model

                model = str(build_tiny_model(Path(tmp)))
            env = tiny_server_env({"SOTRAG_API_KEY": a.api_key} if a.api_key else None)
            startup: list[Probe] = []
            with started_server(model, env, a.serve_arg, a.corpus, startup) as (url, pid):
                report = go(url, pid)
            report.startup_probes = startup
    summary = report.summary()
    print_table(summary, report)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    report.config["corpus"] = a.corpus
    slow = [(p.at_s, round(p.latency_s, 3)) for p in report.startup_probes if p.latency_s > PROBE_P99_LIMIT_S]
    summary["startup_probes_over_100ms"] = {"seconds_from_ready_and_latency": slow, "of": len(report.startup_probes)}
    report.config["model"] = "tests' tiny random-weight model" if a.tiny else (a.model or "the server's")
    data = {"summary": summary, "config": report.config, "machine": report.machine,
            "rss_before": report.rss_before, "rss_after": report.rss_after, "end_state": report.end_state}
    a.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0 if all(summary["acceptance"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
