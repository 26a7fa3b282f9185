"""How long a full garbage collection stalls a process that serves with the in-process vLLM engine, before and
after ``gc.freeze`` (what ``serving.service.freeze_startup_heap`` does once the server is started).

    python benchmarks/gc_pause.py [--collections 5] [--out benchmarks/results/gc_pause_tiny_cpu.json]
    python benchmarks/gc_pause.py --serve-order [--out ...]   # as `sotrag serve` now does it (below)

``--serve-order``: the libraries are imported, collected and frozen first (what ``sotrag serve`` does before it
listens), then the engine starts and ``freeze_startup_heap`` runs as at ready (young generations only, then
``gc.freeze``). It reports that call's time (the event loop's stall at ready), the objects it froze, and how many
of them were garbage (a full collection after ``gc.unfreeze``), next to a full collection at the same point.

Real vLLM (CPU) with the tests' tiny random-weight model, built in a temp dir; the router's and the server's
modules are imported as ``sotrag serve`` would. A bigger model adds little Python state; a big document index
in memory adds more. The pause is the main thread's wall time for ``gc.collect()``: the event loop is blocked
for all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pauses(n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        gc.collect()
        out.append(round((time.perf_counter() - start) * 1e3, 4))
    return out


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


async def measure(collections: int) -> dict[str, object]:
    for module in ("sotrag.app.routing.factory", "sotrag.app.serving.app"):  # loaded as `sotrag serve` does
        importlib.import_module(module)
    from sotrag.app.engines.vllm import VLLMEngine
    from sotrag.app.serving.service import freeze_startup_heap
    from tests.conftest import tiny_engine_config
    from tests.tiny_model import build_tiny_model

    engine = await VLLMEngine.create(tiny_engine_config(build_tiny_model(Path(tempfile.mkdtemp()))))
    try:
        tracked = len(gc.get_objects())
        before = _pauses(collections)
        freeze_startup_heap()
        after = _pauses(collections)
        return {
            "benchmark": "gc_pause",
            "command": f"python benchmarks/gc_pause.py --collections {collections}",
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
            "engine": "VLLMEngine (in-process vLLM, CPU), tests' tiny random-weight model",
            "objects_tracked": tracked,
            "objects_frozen": gc.get_freeze_count(),
            "full_collect_ms_before": before,
            "full_collect_ms_after_freeze": after,
            "median_ms_before": statistics.median(before),
            "median_ms_after_freeze": statistics.median(after),
        }
    finally:
        await engine.aclose()


async def measure_serve_order() -> dict[str, object]:
    for module in ("vllm", "vllm.v1.engine.async_llm", "sentence_transformers", "sotrag.retrieval.index",
                   "sotrag.app.routing.factory", "sotrag.app.serving.app"):
        importlib.import_module(module)
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    before_listen_ms = (time.perf_counter() - start) * 1e3
    frozen_at_listen = gc.get_freeze_count()
    from sotrag.app.engines.vllm import VLLMEngine
    from sotrag.app.serving.service import freeze_startup_heap
    from tests.conftest import tiny_engine_config
    from tests.tiny_model import build_tiny_model

    engine = await VLLMEngine.create(tiny_engine_config(build_tiny_model(Path(tempfile.mkdtemp()))))
    try:
        unfrozen = len(gc.get_objects())
        start = time.perf_counter()
        freeze_startup_heap()
        at_ready_ms = (time.perf_counter() - start) * 1e3
        frozen_at_ready = gc.get_freeze_count() - frozen_at_listen
        gc.unfreeze()
        garbage = gc.collect()  # what was frozen though unreachable
        gc.freeze()
        return {
            "benchmark": "gc_pause --serve-order",
            "command": "python benchmarks/gc_pause.py --serve-order",
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
            "engine": "VLLMEngine (in-process vLLM, CPU), tests' tiny random-weight model",
            "full_collect_before_listening_ms": round(before_listen_ms, 1),
            "objects_frozen_before_listening": frozen_at_listen,
            "objects_unfrozen_at_ready": unfrozen,
            "freeze_at_ready_ms": round(at_ready_ms, 3),
            "objects_frozen_at_ready": frozen_at_ready,
            "garbage_frozen_at_ready": garbage,
        }
    finally:
        await engine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve-order", action="store_true", help="freeze as `sotrag serve` does (see above)")
    args = parser.parse_args()
    if args.serve_order:
        order = asyncio.run(measure_serve_order())
        print(json.dumps(order, indent=1))
        if args.out:
            args.out.write_text(json.dumps(order, indent=1) + "\n")
        return
    result = asyncio.run(measure(args.collections))
    print(f"{result['objects_tracked']} objects tracked; full collection median "
          f"{result['median_ms_before']:.1f} ms before gc.freeze, {result['median_ms_after_freeze']:.4f} ms after")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
