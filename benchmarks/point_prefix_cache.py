"""How much of each point's prompt vLLM's prefix cache serves: the skeleton's prompt AND its output?

    python benchmarks/point_prefix_cache.py --model PATH [--points 4] [--questions 3] [--block-size 32]
        [--eager] [--out benchmarks/results/NAME.json]

Answers a few questions in SoT mode and prints, per point: its prompt tokens, the tokens cached, the tokens
vLLM had to compute (uncached), and the skeleton request's prompt + output tokens. With points that
continue the skeleton request's own token ids, uncached is the point's own suffix (end of the assistant
turn, point instruction, open "i. title") plus at most one KV block; with a re-encoded skeleton text, the
cache stops where the re-encoded ids first differ from the ids the model generated (``--single-char-tokens``
makes them differ at once, as sampled ids of random weights do; the tiny model otherwise often writes the
canonical encoding of its own text). Counts, not timings:
the tiny test model (``python tests/tiny_model.py DIR``) is fine for it. Runs on older sotrag code too (it
reads only ``prompt_tokens``/``cached_prompt_tokens``), which is how the before/after of #13 was taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline

QUESTIONS = [
    "What are good ways to sleep better at night?",
    "How can I improve my time management skills?",
    "What should I check before deploying a web server?",
    "How do I keep a small team productive?",
    "What makes a good technical document?",
]


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    engine = await VLLMEngine.create(
        EngineConfig(
            model=args.model,
            max_model_len=4096,
            max_num_seqs=32,
            enforce_eager=True,
            kv_cache_gib=args.kv_cache_gib,
            extra={"block_size": args.block_size, "seed": 0},
        )
    )
    allowed = None
    if args.single_char_tokens:  # sampled ids that are not the text's canonical encoding, as random weights write
        tok = engine.tokenizer
        allowed = [i for i in range(len(tok)) if len(tok.decode([i])) == 1] + [tok.eos_token_id]
    sampling = SamplingConfig(
        temperature=1.0,
        seed=1234,
        point_max_tokens=16,
        point_min_tokens=8,
        skeleton_max_tokens=512,
        allowed_token_ids=allowed,
    )
    sot = SoTConfig(min_points=args.points, max_points=args.points, min_words=2, max_words=4, eager=args.eager)
    pipeline = SoTPipeline(engine, Settings(sampling=sampling, sot=sot))
    rows: list[dict[str, Any]] = []
    try:
        for q, question in enumerate(QUESTIONS[: args.questions], start=1):
            result = await pipeline.run(question, mode="sot")
            s = result.stats
            for p in result.points:
                shared = getattr(p, "skeleton_prefix_tokens", 0)  # absent before #13
                rows.append(
                    {
                        "question": q,
                        "point": p.index,
                        "skeleton_prompt": s.prompt_tokens.skeleton,
                        "skeleton_output": s.skeleton_tokens,
                        "prompt": p.prompt_tokens,
                        "cached": p.cached_prompt_tokens,
                        "uncached": p.prompt_tokens - p.cached_prompt_tokens,
                        "suffix": p.prompt_tokens - shared if shared else None,
                        "prompt_version": result.prompt_version,
                    }
                )
    finally:
        await engine.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=32, help="KV block size (CPU: a multiple of 32)")
    parser.add_argument("--kv-cache-gib", type=float, default=0.5)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument(
        "--single-char-tokens",
        action="store_true",
        help="sample only one-character tokens: the model's ids then differ from the canonical encoding of its text",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print("q  pt  skeleton prompt+output  point prompt  cached  uncached  suffix")
    for r in rows:
        suffix = "-" if r["suffix"] is None else r["suffix"]
        print(
            f"{r['question']:<2} {r['point']:<3} {r['skeleton_prompt']:>8} + {r['skeleton_output']:<12} "
            f"{r['prompt']:>12} {r['cached']:>7} {r['uncached']:>9} {suffix:>7}"
        )
    summary = {
        "points": len(rows),
        "uncached_mean": statistics.mean(r["uncached"] for r in rows),
        "uncached_max": max(r["uncached"] for r in rows),
        "skeleton_tokens_not_cached_mean": statistics.mean(
            max(0, r["skeleton_prompt"] + r["skeleton_output"] - r["cached"]) for r in rows
        ),
        "block_size": args.block_size,
        "eager": args.eager,
        "single_char_tokens": args.single_char_tokens,
    }
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
