"""What the remote engine costs on top of a vLLM OpenAI server: start-up (probe), the server-side chat
template (``/tokenize`` + ``/detokenize``), token counting, and whole SoT / normal answers.

    python benchmarks/remote_engine.py --url http://127.0.0.1:8001/v1 [--model NAME] [--answers 3]
        [--out benchmarks/results/remote_engine.json]

Prints a table and writes the numbers as JSON. On CPU with the tiny test model the answer times say nothing
about speed; the per-call overheads (render, count) are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.remote import RemoteEngine
from sotrag.app.pipeline import SoTPipeline
from sotrag.prompts.messages import ChatMessage


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "max_ms": round(max(samples) * 1000, 2)}


async def run(url: str, model: str | None, answers: int) -> dict[str, object]:
    config = EngineConfig(urls=[url], model=model)
    t0 = time.perf_counter()
    engine = await RemoteEngine.create(config)
    create_s = time.perf_counter() - t0
    try:
        renders, counts = [], []
        for i in range(20):  # distinct messages: no cache hit
            messages = [ChatMessage("system", "Answer briefly."), ChatMessage("user", f"question number {i}?")]
            t = time.perf_counter()
            engine.render_chat(messages)
            renders.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.count_tokens(f"a passage of text number {i} " * 20)
            counts.append(time.perf_counter() - t)
        settings = Settings(
            engine=config,
            sampling=SamplingConfig(temperature=1.0, seed=3, skeleton_max_tokens=512, point_max_tokens=16),
            sot=SoTConfig(min_points=3, max_points=3, min_words=2, max_words=4),
        )
        pipeline = SoTPipeline(engine, settings)
        results: dict[str, list[float]] = {"sot": [], "normal": []}
        cached: list[float] = []
        for i in range(answers):
            for mode in ("sot", "normal"):
                r = await pipeline.run(f"What are tips to sleep better, take {i}?", mode=mode)
                results[mode].append(r.stats.total_s)
                if mode == "sot":
                    cached.append(r.stats.cached_share)
        return {
            "url": url,
            "model": engine.model_name,
            "create_s": round(create_s, 3),
            "render_chat": _ms(renders),
            "count_tokens": _ms(counts),
            "sot_total": _ms(results["sot"]),
            "normal_total": _ms(results["normal"]),
            "sot_cached_share_median": round(statistics.median(cached), 3),
            "features": engine.transport.pool.servers[0].features,
        }
    finally:
        await engine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model")
    parser.add_argument("--answers", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args.url, args.model, args.answers))
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
