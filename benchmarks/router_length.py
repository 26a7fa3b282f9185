"""What the question's length costs ``route()``: the shipped router (long questions cut to their first 24 and last 22
tokens) against a router that encodes the whole question (up to 256 tokens), on the same questions.

    python benchmarks/router_length.py ../shared/data/sot/wizardlm_questions.csv --whole-artifact OLD.npz \
        [--artifact "NAME=OTHER.npz" ...]

``--whole-artifact`` is an artifact trained without the cut (the one shipped before, from git history:
``git show 06f8cb2:app/routing/assets/router.npz > OLD.npz``). ``--artifact`` adds more routers to the turns
(e.g. the logistic head shipped before the SVM one: ``git show 7b750f8:app/routing/assets/router.npz``). All run
with 1 intra-op thread, taking turns question by question, idle (``as-is``) and with one busy GEMM thread per core
(``busy-gemm``, as in ``router_latency.py``), closed and paced. WizardLM's questions run long (median 54 tokens,
p99 ~400), where Vicuna-80's are all under 42: there the cut and the whole question do the same work. Writes
``benchmarks/results/router_length.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from router_latency import LOADS, RESULTS, cpu_name, read_questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", type=Path)
    parser.add_argument("--whole-artifact", type=Path, required=True)
    parser.add_argument("--artifact", action="append", default=[], metavar="NAME=PATH",
                        help="another router artifact to time in the same turns (repeatable)")
    parser.add_argument("--loads", default="as-is,busy-gemm")
    parser.add_argument("--pause-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "router_length.json")
    args = parser.parse_args()

    from sotrag.app.engines.base import EngineLoad
    from sotrag.app.routing.classifier import RouterModel, TrainedRouter

    questions = read_questions(args.questions)
    load = EngineLoad(running=3, waiting=0, max_num_seqs=256, kv_cache_usage=0.1)
    routers = {"shipped (head 24 + tail 22)": TrainedRouter(), "whole question": TrainedRouter(
        RouterModel.load(args.whole_artifact))}
    for spec in args.artifact:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--artifact takes NAME=PATH, got {spec!r}")
        routers[name] = TrainedRouter(RouterModel.load(path))
    for r in routers.values():
        r.route(questions[0], load)  # load the encoders before timing
    tok = next(iter(routers.values())).encoder._tokenizer  # type: ignore[attr-defined]
    tokens = [len(tok(q)["input_ids"]) for q in questions]
    rows = []
    for load_name in args.loads.split(","):
        target = LOADS[load_name]
        procs = [mp.get_context("spawn").Process(target=target, daemon=True) for _ in range(os.cpu_count() or 2)]
        procs = procs if target else []
        for p in procs:
            p.start()
        if procs:
            time.sleep(3)
        try:
            for pacing, pause in (("closed", 0.0), ("paced", args.pause_ms / 1000)):
                wall: dict[str, list[float]] = {name: [] for name in routers}
                cpu: dict[str, list[float]] = {name: [] for name in routers}
                for q in questions:
                    for name, r in routers.items():  # in turns: the machine's drift hits both
                        if pause:
                            time.sleep(pause)
                        c, t = time.thread_time(), time.perf_counter()
                        r.route(q, load)
                        wall[name].append((time.perf_counter() - t) * 1000)
                        cpu[name].append((time.thread_time() - c) * 1000)
                for name in routers:
                    a, b = np.array(wall[name]), np.array(cpu[name])
                    row = {"load": load_name, "arrivals": pacing, "router": name, "n": len(a),
                           "p50_ms": round(float(np.percentile(a, 50)), 3),
                           "p99_ms": round(float(np.percentile(a, 99)), 3),
                           "max_ms": round(float(a.max()), 3), "cpu_p50_ms": round(float(np.percentile(b, 50)), 3),
                           "cpu_p99_ms": round(float(np.percentile(b, 99)), 3),
                           "load_average_1m": round(os.getloadavg()[0], 2)}
                    rows.append(row)
                    print(f"{load_name:9} {pacing:6} {name:28} p50 {row['p50_ms']:6.2f} p99 {row['p99_ms']:6.2f} "
                          f"max {row['max_ms']:6.2f} cpu p50 {row['cpu_p50_ms']:5.2f} p99 {row['cpu_p99_ms']:5.2f}",
                          flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=10)
    record = {
        "benchmark": "router_length",
        "command": "python benchmarks/router_length.py " + " ".join(sys.argv[1:]),
        "questions": str(args.questions), "n_questions": len(questions),
        "question_tokens": {"median": float(np.median(tokens)), "p99": float(np.percentile(tokens, 99)),
                            "max": int(max(tokens))},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
