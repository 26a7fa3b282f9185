"""The CPU an answer costs sotrag's own process and its event loop: the in-process engine against the remote one.

    python benchmarks/frontend_cpu.py [--answers 12] [--points 7] [--point-tokens 80] [--stream-intervals 1,4]
        [--out FILE]

On the H200 the serving process's event loop saturated before the GPU (docs/BENCHMARKS.md, issue 13): that one
loop runs the pipeline AND, with the in-process engine (``VLLMEngine``), vLLM's frontend: its output handler,
the detokenizer and the per-request queues. With the remote engine (``RemoteEngine``) those run in the vLLM
server's process, and sotrag's loop instead reads the server's SSE stream (httpx, one JSON chunk per delta).
Which costs the loop less per answer is what this measures, on the same answers, and what
``sampling.stream_interval`` (N tokens a delta for points and normal answers) saves on each.

Both engines run the tests' tiny random-weight model (built here) on real vLLM on this CPU: the in-process
engine with the tests' settings (``tests/conftest.py``), the remote one against the tests' vLLM OpenAI
server (``tests/vllm_servers.py``), started here with the same model. Answers go one after another (nothing
else runs in this process), each with fixed lengths: a guided skeleton of ``--points`` points, then
``--point-tokens`` tokens per point (min = max tokens), or ``points x point-tokens`` tokens for a normal answer.

Per answer it reports the CPU time of the event loop's thread (``time.thread_time`` on the loop: the budget that
saturated), the CPU of this whole process (``time.process_time``: the loop plus vLLM's or httpx's helper threads)
and the wall time. vLLM's engine core (its own process in both cases) and the server's API process are not in
either figure. The model's speed on this CPU says nothing; the CPU per output token in this process is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: its tests' helpers

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.remote import RemoteEngine
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline
from tests.conftest import tiny_engine_config  # the tests' engine settings: small KV cache, eager
from tests.tiny_model import build_tiny_model, plain_token_ids
from tests.vllm_servers import run_vllm_servers  # the tests' OpenAI server: same model, small KV cache, eager

QUESTION = "What are tips to sleep better?"


def settings_for(a: argparse.Namespace, engine: EngineConfig, allowed: list[int], interval: int = 1) -> Settings:
    """``interval``: ``sampling.stream_interval``, the per-request setting (points and normal answers)."""
    tokens = a.points * a.point_tokens
    return Settings(
        engine=engine,
        sampling=SamplingConfig(
            temperature=1.0, seed=0, skeleton_max_tokens=512, allowed_token_ids=allowed,
            point_max_tokens=a.point_tokens, point_min_tokens=a.point_tokens,
            normal_max_tokens=tokens, normal_min_tokens=tokens, stream_interval=interval,
        ),
        # Guided: the random model's unguided skeleton would take a retry; the guide gives exactly --points.
        sot=SoTConfig(min_points=a.points, max_points=a.points, min_words=2, max_words=4, guided_skeleton=True),
    )


async def one_answer(pipeline: SoTPipeline, mode: str, i: int) -> dict[str, float]:
    t_thread, t_proc, t_wall = time.thread_time(), time.process_time(), time.perf_counter()
    n = 0
    result = None
    async for event in pipeline.stream(f"{QUESTION} ({i})", mode=mode):
        n += 1
        result = getattr(event, "result", result)
    sample = {
        "wall": time.perf_counter() - t_wall,
        "loop_cpu": time.thread_time() - t_thread,  # this coroutine runs on the loop's thread
        "process_cpu": time.process_time() - t_proc,
        "events": n,
    }
    assert result is not None and result.mode == mode, (mode, result and result.fallback_reason)
    return {**sample, "tokens": result.stats.tokens}


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    def p50(key: str, scale: float = 1.0) -> float:
        return round(statistics.median(x[key] for x in samples) * scale, 3)

    return {
        "answers": len(samples), "output_tokens_p50": p50("tokens"), "events_p50": p50("events"),
        "loop_cpu_ms_p50": p50("loop_cpu", 1000), "process_cpu_ms_p50": p50("process_cpu", 1000),
        "wall_ms_p50": p50("wall", 1000),
        "loop_cpu_ms_per_output_token_p50": round(statistics.median(x["loop_cpu"] / x["tokens"] * 1000
                                                                    for x in samples), 3),
    }


async def run_engine(
    a: argparse.Namespace, name: str, engine: Any, cfg: EngineConfig, allowed: list[int]
) -> list[dict[str, Any]]:
    """Every ``--stream-intervals`` value (``sampling.stream_interval``: vLLM sends a point's or a normal
    answer's tokens N to a delta; the first and the last at once) on one engine, SoT then normal. The values
    take turns answer by answer (this shared machine's speed drifts over minutes: a block per value would
    measure the drift)."""
    intervals = [int(x) for x in a.stream_intervals.split(",")]
    pipelines = {n: SoTPipeline(engine, settings_for(a, cfg, allowed, n)) for n in intervals}
    rows = []
    for mode in ("sot", "normal"):
        samples: dict[int, list[dict[str, float]]] = {n: [] for n in intervals}
        for n in intervals:  # warm-up: first-request paths, caches
            await pipelines[n].run(QUESTION, mode=mode)
        for i in range(a.answers):
            for n in intervals:
                samples[n].append(await one_answer(pipelines[n], mode, i))
        rows += [{"engine": name, "stream_interval": n, "mode": mode, **summarize(samples[n])} for n in intervals]
    return rows


async def run_inprocess(a: argparse.Namespace, model_dir: Path, allowed: list[int]) -> list[dict[str, Any]]:
    cfg = tiny_engine_config(model_dir)
    engine = await VLLMEngine.create(cfg)
    try:
        return await run_engine(a, "in-process", engine, cfg, allowed)
    finally:
        await engine.aclose()


async def run_remote(a: argparse.Namespace, model_dir: Path, url: str, allowed: list[int]) -> list[dict[str, Any]]:
    cfg = EngineConfig(urls=[url], model=str(model_dir), max_num_seqs=16)  # the test server's --max-num-seqs
    engine = await RemoteEngine.create(cfg)
    try:
        return await run_engine(a, "remote", engine, cfg, allowed)
    finally:
        await engine.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=12)
    ap.add_argument("--points", type=int, default=7)
    ap.add_argument("--point-tokens", type=int, default=80)
    ap.add_argument("--stream-intervals", default="1,4", help="sampling.stream_interval values, each on both engines")
    ap.add_argument("--no-remote", action="store_true", help="skip the remote engine's rows")
    ap.add_argument("--workdir", default="/tmp/sotrag-frontend-cpu")
    ap.add_argument("--out", default="benchmarks/results/frontend_cpu.json")
    a = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_model(workdir / "tiny")
    allowed = plain_token_ids(model_dir)  # no EOS, no role marker: every answer has its fixed length
    rows = asyncio.run(run_inprocess(a, model_dir, allowed))  # first, alone: no server on the cores
    if not a.no_remote:
        with run_vllm_servers(model_dir, workdir, count=1) as (server,):
            rows += asyncio.run(run_remote(a, model_dir, server.url, allowed))
    res: dict[str, Any] = {
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "cpu_model": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                    if ln.startswith("model name")), "?")},
        "args": vars(a), "rows": rows,
    }
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"host: {res['host']['cpu_model']}, {res['host']['cores']} cores; tiny model, {a.points} points x "
          f"{a.point_tokens} tokens; medians of {a.answers} answers")
    print("| engine | stream interval | mode | output tokens | events | loop CPU ms | process CPU ms | wall ms | "
          "loop CPU ms / output token |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['stream_interval']} | {r['mode']} | {r['output_tokens_p50']:.0f} | "
              f"{r['events_p50']:.0f} | {r['loop_cpu_ms_p50']} | "
              f"{r['process_cpu_ms_p50']} | {r['wall_ms_p50']} | {r['loop_cpu_ms_per_output_token_p50']} |")


if __name__ == "__main__":
    main()
