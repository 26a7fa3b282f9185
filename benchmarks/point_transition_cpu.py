"""How long the pipeline takes, on its own side, to hand the points to the engine once the skeleton has ended.

    python benchmarks/point_transition_cpu.py [--reps 8] [--context-words 2700] [--out FILE]

Runs real SoT answers on the in-process vLLM engine (CPU) with the tests' tiny random-weight model, and
timestamps, from inside this process: the skeleton request's last delta, each point task's start, its request
being built (``_Answer.point_request``, which encodes the point prompt), and the point's ``engine.generate`` being
entered. The wrapping is benchmark-only (method replacement on the engine object, on ``_Answer.point_request`` and
on ``PointGroup._expand``): it adds two timestamps per point and changes nothing else; the pipeline code that runs
is the code users run. It separates the pipeline's own share of the GPU headline's gap between the skeleton's end
and the first point token (docs/archive/benchmarks-history.md, machine F) from what happens inside vLLM after the
request is added. The model's own steps are CPU steps and say nothing here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import tiny_engine_config  # the tests' engine settings: small KV cache, eager
from tiny_model import build_tiny_model

import sotrag.app.pipeline as pipeline_module
import sotrag.app.points as points_module
from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.retrieval.types import Passage


class FixedRetriever:
    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages

    async def aretrieve(self, question: str, k: int, filters: Any = None) -> list[Passage]:
        return self.passages


async def run(a: argparse.Namespace) -> dict:
    model_dir = build_tiny_model(Path(a.workdir) / "tiny")
    engine = await VLLMEngine.create(tiny_engine_config(model_dir))
    log: list[tuple[str, float, str]] = []
    generate = engine.generate

    async def timed_generate(request: Any) -> Any:
        log.append(("call", time.perf_counter(), request.request_id))
        async for delta in generate(request):
            log.append(("delta", time.perf_counter(), request.request_id))
            yield delta

    engine.generate = timed_generate  # type: ignore[method-assign]
    answer_cls, group_cls = pipeline_module._Answer, points_module.PointGroup
    point_request, expand = answer_cls.point_request, group_cls._expand

    async def timed_point_request(self: Any, point: Any, *args: Any, **kw: Any) -> Any:
        log.append(("build", time.perf_counter(), str(point.index)))
        request = await point_request(self, point, *args, **kw)
        log.append(("built", time.perf_counter(), str(point.index)))
        return request

    async def timed_expand(self: Any, point: Any, *args: Any, **kw: Any) -> Any:
        log.append(("task", time.perf_counter(), str(point.index)))
        return await expand(self, point, *args, **kw)

    answer_cls.point_request = timed_point_request  # type: ignore[method-assign]
    group_cls._expand = timed_expand  # type: ignore[method-assign]
    words = " ".join(f"word{i % 300}" for i in range(a.context_words // 3))
    passages = [Passage(text=words, source=f"doc{j}.md", chunk_id=f"c{j}", score=1.0) for j in range(3)]
    settings = Settings(
        sampling=SamplingConfig(temperature=1.0, seed=1, point_max_tokens=8, skeleton_max_tokens=256),
        sot=SoTConfig(min_points=2, max_points=7, min_words=2, max_words=4),
    )
    reps: list[dict[str, Any]] = []
    try:
        for _ in range(a.reps):
            log.clear()
            result = await pipeline_module.SoTPipeline(engine, settings, retriever=FixedRetriever(passages)).run(
                "What are some tips to sleep better?", mode="sot"
            )
            skeleton_ids = {rid for kind, _, rid in log if kind == "call" and "skeleton" in rid}
            last = max(t for kind, t, rid in log if kind == "delta" and rid in skeleton_ids)
            calls = sorted(t for kind, t, rid in log if kind == "call" and "point" in rid)
            builds: dict[Any, dict[str, float]] = {}
            for kind, t, idx in log:
                if kind in ("build", "built"):
                    builds.setdefault(idx, {})[kind] = t
            if not calls:
                continue
            reps.append({
                "points": len(calls),
                "first_point_call_ms": (calls[0] - last) * 1e3,
                "last_point_call_ms": (calls[-1] - last) * 1e3,
                "build_ms_per_point": statistics.fmean((b["built"] - b["build"]) * 1e3 for b in builds.values()),
                "point_prompt_tokens": result.stats.prompt_tokens.points / len(calls),
                "skeleton_mode": result.stats.skeleton_mode,
            })
    finally:
        await engine.aclose()
    return {
        "benchmark": "point_transition_cpu",
        "command": f"python benchmarks/point_transition_cpu.py --reps {a.reps} --context-words {a.context_words}",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "model": "tests/tiny_model.py (random weights), in-process vLLM on CPU",
        "reps": reps,
        "median_last_point_call_ms": statistics.median(r["last_point_call_ms"] for r in reps) if reps else None,
        "median_build_ms_per_point": statistics.median(r["build_ms_per_point"] for r in reps) if reps else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--context-words", type=int, default=2700)
    ap.add_argument("--workdir", default="/tmp/sotrag-point-transition")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = asyncio.run(run(a))
    print("rep  points  first point call ms  last point call ms  build ms/point  prompt tokens/point  skeleton")
    for i, r in enumerate(res["reps"]):
        print(f"{i:>3}  {r['points']:>6}  {r['first_point_call_ms']:>19.1f}  {r['last_point_call_ms']:>18.1f}  "
              f"{r['build_ms_per_point']:>14.2f}  {r['point_prompt_tokens']:>19.0f}  {r['skeleton_mode']}")
    print(f"median: last point handed to the engine {res['median_last_point_call_ms']:.1f} ms after the skeleton's "
          f"last delta; building a point's request {res['median_build_ms_per_point']:.2f} ms")
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
