"""Routing latency of SoT-R on this CPU, idle and busy: p50 / p99 of ``route()`` per question.

A server routes while it serves, so the benchmark makes the cores busy itself and times ``route()`` under
each load it creates, next to the machine as it is:

- ``as-is``: no load from this benchmark (on a shared machine that is NOT idle: see the load averages);
- ``busy-spin``: one pure-Python busy loop per core (CPU-bound, like a tokenizer or Python server work);
- ``busy-gemm``: one 1-thread torch GEMM loop per core (2048x2048 fp32: compute AND cache/memory traffic,
  like an embedding batch or a vLLM CPU worker).

Variants: the shipped router (``onnx-int8`` encoder, 1 and 2 intra-op threads), the torch fp32 reference
encoder (1 and 2 torch threads; same head, latency only) and the tokenizer alone (the floor: anything that
runs this long under the same scheduling). Two arrival patterns: ``closed`` (questions back to back, the
router never sleeps) and ``paced`` (a pause between questions, as a server waits for requests: a thread
that wakes up is scheduled sooner than a CPU hog). Every row records the 1-minute load average at its end
and the CPU time the call itself used (``cpu_ms``: compute; ``wall - cpu`` is waiting for a core).

    python benchmarks/router_latency.py ../shared/data/sot/vicuna80_questions.csv --repeats 2

Writes ``benchmarks/results/router_latency.json``. The target (p99 < 10 ms busy, 1 thread) lives here only.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import cpu_model

RESULTS = Path(__file__).parent / "results"
TARGET_P99_MS = 10.0


def read_questions(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.readline()
        f.seek(0)
        reader = csv.DictReader(f, delimiter=";" if ";" in sample else ",")
        return [row["request"] for row in reader if row.get("request")]


def _spin() -> None:  # a CPU-bound loop: one core's worth of Python work
    x = 0
    while True:
        x += 1


def _gemm() -> None:  # one torch thread of GEMMs: compute plus cache and memory traffic
    import torch

    torch.set_num_threads(1)
    a = torch.randn(2048, 2048)
    while True:
        a @ a


LOADS: dict[str, Callable[[], None] | None] = {"as-is": None, "busy-spin": _spin, "busy-gemm": _gemm}


def timed(fn: Callable[[str], object], questions: list[str], repeats: int, pause_s: float) -> dict[str, float]:
    for q in questions[:5]:  # warm-up
        fn(q)
    wall, cpu = [], []
    for _ in range(repeats):
        for q in questions:
            if pause_s:
                time.sleep(pause_s)
            c, t = time.thread_time(), time.perf_counter()
            fn(q)
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
    a, b = np.array(wall), np.array(cpu)
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "cpu_p50_ms": round(float(np.percentile(b, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(b, 99)), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def report(row: dict) -> None:
    print(
        f"{row['load']:9} {row['arrivals']:6} {row['variant']:52} p50 {row['p50_ms']:7.2f}  p99 {row['p99_ms']:7.2f}  "
        f"cpu p50 {row['cpu_p50_ms']:6.2f}  load avg {row['load_average_1m']:5.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("questions", type=Path, help="CSV with a 'request' column (; or , separated)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pause-ms", type=float, default=20.0, help="pause before each question when paced")
    parser.add_argument("--loads", default=",".join(LOADS), help=f"comma list of {', '.join(LOADS)}")
    parser.add_argument(
        "--torch-threads",
        default="1",
        help="torch threads of the reference rows, comma list ('' for none); "
        "2 is 4-40x slower than 1 on this busy 2-core machine (oversubscription) and takes minutes per row",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="also time the shipped 1-thread route() with this thread at this nice "
        "value (e.g. -10; needs CAP_SYS_NICE): a deployment option, not the default",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "router_latency.json")
    args = parser.parse_args()

    import torch

    from sotrag.app.engines.base import EngineLoad
    from sotrag.app.routing.classifier import TrainedRouter
    from sotrag.app.routing.load_policy import LoadPolicy
    from sotrag.app.routing.router import SoTRouter

    questions = read_questions(args.questions)
    load = EngineLoad(running=3, waiting=0, max_num_seqs=256, kv_cache_usage=0.1)
    shipped = TrainedRouter()
    variants: dict[str, tuple[Callable[[str], object], int | None]] = {}

    def routing(router: SoTRouter) -> Callable[[str], object]:
        return lambda q: router.route(q, load)

    for threads in (1, 2):
        r = SoTRouter(TrainedRouter(shipped.model, threads=threads), LoadPolicy())
        variants[f"route() {shipped.model.encoder}, {threads} thread(s)"] = (routing(r), None)
    fp32 = SoTRouter(TrainedRouter(dataclasses.replace(shipped.model, encoder="onnx-fp32")), LoadPolicy())
    variants["route() onnx-fp32 (same head: latency only), 1 thread"] = (lambda q: fp32.route(q, load), None)
    ref = SoTRouter(TrainedRouter(dataclasses.replace(shipped.model, encoder="torch-fp32")), LoadPolicy())
    for threads in (int(t) for t in args.torch_threads.split(",") if t.strip()):  # same head: latency only
        variants[f"route() torch-fp32 reference, {threads} torch thread(s)"] = (lambda q: ref.route(q, load), threads)
    tok = shipped.encoder._tokenizer  # type: ignore[attr-defined]
    variants["tokenizer only (floor)"] = (lambda q: tok(q, truncation=True, max_length=256, return_tensors="np"), None)
    for fn, _ in variants.values():
        fn(questions[0])  # build / load every encoder before any timing

    rows = []
    default_threads = torch.get_num_threads()
    for load_name in args.loads.split(","):
        target = LOADS[load_name]
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=target, daemon=True) for _ in range(os.cpu_count() or 2)] if target else []
        for p in procs:
            p.start()
        if procs:
            time.sleep(3)  # let the load processes start working
        try:
            for pacing, pause in (("closed", 0.0), ("paced", args.pause_ms / 1000)):
                for name, (fn, torch_threads) in variants.items():
                    torch.set_num_threads(torch_threads or 1)
                    row = {"load": load_name, "arrivals": pacing, "variant": name}
                    row |= timed(fn, questions, args.repeats, pause)
                    rows.append(row)
                    report(row)
                if args.nice:
                    name, (fn, _) = next(iter(variants.items()))
                    tid = threading.get_native_id()
                    os.setpriority(os.PRIO_PROCESS, tid, args.nice)
                    try:
                        row = {"load": load_name, "arrivals": pacing, "variant": f"{name}, nice {args.nice}"}
                        row |= timed(fn, questions, args.repeats, pause)
                    finally:
                        os.setpriority(os.PRIO_PROCESS, tid, 0)
                    rows.append(row)
                    report(row)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=10)
    torch.set_num_threads(default_threads)

    tokens = [len(tok(q, truncation=True, max_length=256)["input_ids"]) for q in questions]
    record = {
        "benchmark": "router_latency",
        "command": "python benchmarks/router_latency.py " + " ".join(sys.argv[1:]),
        "questions": str(args.questions),
        "n_questions": len(questions),
        "question_tokens": {"median": float(np.median(tokens)), "max": int(max(tokens))},
        "target": f"p99 < {TARGET_P99_MS} ms, busy, 1 thread",
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "note": "'as-is' adds no load, but the machine may have other jobs: see each row's load average",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
        },
        "router": {
            "embedding_model": shipped.model.embedding_model,
            "encoder": shipped.model.encoder,
            "layers": list(shipped.model.layers),
        },
        "pause_ms_when_paced": args.pause_ms,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"machine: {record['machine']['cpu']}, {os.cpu_count()} cores; wrote {args.out}")


if __name__ == "__main__":
    main()
