"""The in-process engine's parallelism options on real GPUs: for each of tensor, pipeline and data parallelism of
2, start ``VLLMEngine`` with sotrag's ``EngineConfig`` (the option as a user sets it), answer one question in SoT
and one in normal mode through ``SoTPipeline``, and record vLLM's resulting parallel config and the GPU memory each
GPU holds while the engine is up. A smoke test, not a benchmark: the model is the tiny random-weight test model.

    python parallel_smoke.py MODEL_DIR --out OUT.json [--parts tp,pp,dp]

NOT RUN YET: it needs a machine with 2 GPUs, and none was lent in the session that wrote it (issue 10). On the
device: stage vLLM with ../shared/device, build the tiny model here (tests/tiny_model.py) and carry it, put this
checkout's package on PYTHONPATH, then run it there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from typing import Any

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline

PARTS: dict[str, dict[str, Any]] = {
    "tp": {"tensor_parallel_size": 2, "distributed_executor_backend": "mp"},
    "pp": {"pipeline_parallel_size": 2, "distributed_executor_backend": "mp"},
    "dp": {"data_parallel_size": 2},
}


def gpu_memory_mib() -> list[int]:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
    ).stdout
    return [int(x) for x in out.split()]


async def one(model: str, part: str) -> dict[str, Any]:
    config = EngineConfig(
        preset="gpu",
        model=model,
        max_model_len=2048,
        gpu_memory_utilization=0.2,
        max_num_seqs=16,
        enforce_eager=True,
        extra={"attention_config": {"backend": "FLASH_ATTN"}, "seed": 0},
        **PARTS[part],
    )
    settings = Settings(
        engine=config,
        sampling=SamplingConfig(temperature=1.0, seed=3, skeleton_max_tokens=512, point_max_tokens=16,
                                normal_max_tokens=32),
        sot=SoTConfig(min_points=3, max_points=3, max_words=4),
    )
    t0 = time.perf_counter()
    engine = await VLLMEngine.create(config)
    start_s = time.perf_counter() - t0
    try:
        p = engine._llm.vllm_config.parallel_config
        row: dict[str, Any] = {
            "part": part,
            "options": PARTS[part],
            "engine_start_s": round(start_s, 1),
            "vllm_parallel_config": {
                "tensor_parallel_size": p.tensor_parallel_size,
                "pipeline_parallel_size": p.pipeline_parallel_size,
                "data_parallel_size": p.data_parallel_size,
                "distributed_executor_backend": str(p.distributed_executor_backend),
                "world_size": p.world_size,
            },
            "gpu_memory_used_mib": gpu_memory_mib(),
        }
        pipeline = SoTPipeline(engine, settings)
        for mode in ("sot", "normal"):
            r = await pipeline.run("How can I improve my time management skills?", mode=mode)
            row[mode] = {
                "mode": r.mode,
                "points": len(r.points),
                "tokens": r.stats.tokens,
                "total_s": round(r.stats.total_s, 3),
                "fallback_reason": r.fallback_reason,
                "cached_share": r.stats.cached_share,
            }
        return row
    finally:
        await engine.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="tp,pp,dp")
    a = ap.parse_args()
    rows = []
    for part in a.parts.split(","):
        try:
            rows.append(asyncio.run(one(a.model, part)))
        except Exception as exc:  # record and go on: each part is its own engine
            rows.append({"part": part, "options": PARTS[part], "error": f"{type(exc).__name__}: {exc}"[:2000]})
        print(json.dumps(rows[-1]), flush=True)
        with open(a.out, "w") as f:
            json.dump({"gpus_before": gpu_memory_mib(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
