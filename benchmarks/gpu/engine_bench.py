"""Engine-only GPU benchmark: one ``AsyncLLM`` start, many shapes, raw JSON out, a short table last.

Parts (``--parts``, comma-separated):
  steps    table 5: decode step time by batch size at 1.5k context
  target   the issue's engine-only reference: 400 normal tokens vs 40-token skeleton + 8 x 50, cache on/off
  headline 7 points x 80 tokens, 1500 context, prefix caching on and off (table 3, engine side)
  grid     table 1's shapes at engine level: points x tokens/point x context, caching on

Usage (on the GPU machine, after ``source .device-stage/vd/stage_on_device.sh``):
  python3 benchmarks/gpu/engine_bench.py --model /tmp/m7b --label 7b-bf16 --out $OUT/engine_7b.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_shapes as es


def engine_args(a: argparse.Namespace):  # -> AsyncEngineArgs
    from vllm.engine.arg_utils import AsyncEngineArgs

    kw = dict(
        model=a.model, load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
        enable_prefix_caching=True, max_model_len=a.max_model_len, gpu_memory_utilization=a.gpu_mem,
        max_num_seqs=a.max_num_seqs, seed=0, disable_log_stats=False,
    )
    if a.attention_backend:
        kw["attention_config"] = {"backend": a.attention_backend}
    if a.quantization:
        kw["quantization"] = a.quantization
    if a.kv_cache_dtype:
        kw["kv_cache_dtype"] = a.kv_cache_dtype
    return AsyncEngineArgs(**kw)


def gpu_info() -> dict:
    """Through vLLM's platform (NVML), so the parent process never initialises CUDA before the engine forks."""
    import torch
    import vllm
    from vllm.platforms import current_platform

    try:
        name = current_platform.get_device_name(0)
        mem = round(current_platform.get_device_total_memory(0) / 2**30, 1)
    except Exception as e:  # the CPU build in local smoke runs
        name, mem = f"none ({type(e).__name__})", 0.0
    return {"gpu": name, "gpu_mem_gib": mem, "vllm": vllm.__version__, "torch": torch.__version__}


async def main_async(a: argparse.Namespace) -> dict:
    from vllm.v1.engine.async_llm import AsyncLLM

    result: dict = {"label": a.label, "model": a.model, "args": vars(a), **gpu_info()}
    out = Path(a.out)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1))

    t0 = time.perf_counter()
    engine = AsyncLLM.from_engine_args(engine_args(a))
    result["engine_start_s"] = time.perf_counter() - t0
    cfg = engine.vllm_config
    result["engine"] = {
        "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens,
        "block_size": cfg.cache_config.block_size,
        "num_gpu_blocks": cfg.cache_config.num_gpu_blocks,
        "quantization": cfg.model_config.quantization,
        "kv_cache_dtype": cfg.cache_config.cache_dtype,
        "vocab_size": cfg.model_config.get_vocab_size(),
    }
    vocab = result["engine"]["vocab_size"]
    es.TOKEN_RANGE = (min(300, vocab // 4), min(30000, vocab))  # ordinary ids; the tiny test model has 1k
    print(f"[{a.label}] engine up in {result['engine_start_s']:.1f}s {result['engine']}", flush=True)
    save()
    parts = a.parts.split(",")
    try:
        # warm-up: first requests pay for lazy initialisation
        await es.compare(engine, points=4, tokens_per_point=16, context_tokens=256, skeleton_tokens=16, seed=99)
        if "steps" in parts:
            result["steps"] = await es.decode_steps(engine, [1, 2, 4, 8, 16, 32, 48, 64], context_tokens=1500)
            for r in result["steps"]:
                print(f"[{a.label}] step B={r['batch']:>2}: {r['step_ms']:.2f} ms", flush=True)
            save()
        if "target" in parts:
            result["target"] = []
            for caching in (True, False):
                r = await es.compare(engine, points=8, tokens_per_point=50, context_tokens=1500,
                                     skeleton_tokens=40, caching=caching, reps=a.reps)
                result["target"].append(r)
                print(f"[{a.label}] target " + es.row_summary(r), flush=True)
                save()
        if "headline" in parts:
            result["headline"] = []
            for caching in (True, False):
                r = await es.compare(engine, points=7, tokens_per_point=80, context_tokens=1500,
                                     skeleton_tokens=a.skel_per_point * 7, caching=caching, reps=a.reps)
                result["headline"].append(r)
                print(f"[{a.label}] headline " + es.row_summary(r), flush=True)
                save()
        if "grid" in parts:
            result["grid"] = []
            for ctx in [int(c) for c in a.grid_contexts.split(",")]:
                for n in (3, 5, 7, 10):
                    for tpp in (40, 80, 120):
                        r = await es.compare(engine, points=n, tokens_per_point=tpp, context_tokens=ctx,
                                             skeleton_tokens=a.skel_per_point * n, caching=True, reps=1)
                        result["grid"].append(r)
                        print(f"[{a.label}] grid " + es.row_summary(r), flush=True)
                        save()
    finally:
        result["total_s"] = time.perf_counter() - t0
        save()
        engine.shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="folder with config.json (weights are dummy)")
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="steps,target,headline,grid")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skel-per-point", type=int, default=10, help="skeleton tokens per point")
    ap.add_argument("--grid-contexts", default="0,1500,4000")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--gpu-mem", type=float, default=0.85)
    ap.add_argument("--attention-backend", default="FLASH_ATTN")
    ap.add_argument("--quantization", default=None)
    ap.add_argument("--kv-cache-dtype", default=None)
    a = ap.parse_args()
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
