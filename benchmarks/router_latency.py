"""Routing latency of SoT-R on this CPU: p50 / p90 / p99 per question, one question at a time.

Compares, in one run: the whole ``route()`` (MiniLM forward + head + load policy) with 1 and with 2 torch
threads, the logistic head alone, and the load policy alone. Writes a JSON record and prints a table.

    python benchmarks/router_latency.py /work/shared/data/sot/vicuna80_questions.csv --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def read_questions(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        sample = f.readline()
        f.seek(0)
        reader = csv.DictReader(f, delimiter=";" if ";" in sample else ",")
        return [row["request"] for row in reader if row.get("request")]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn: Callable[[str], object], questions: list[str], repeats: int) -> dict[str, float]:
    for q in questions[:5]:  # warm-up
        fn(q)
    samples = []
    for _ in range(repeats):
        for q in questions:
            t = time.perf_counter()
            fn(q)
            samples.append((time.perf_counter() - t) * 1000)
    a = np.array(samples)
    return {
        "n": len(a),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(statistics.fmean(a)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path, help="CSV with a 'request' column (; or , separated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "router_latency.json")
    args = parser.parse_args()

    import torch

    from sotrag.app.engines.base import EngineLoad
    from sotrag.app.routing.classifier import TrainedRouter
    from sotrag.app.routing.load_policy import LoadPolicy
    from sotrag.app.routing.router import SoTRouter

    questions = read_questions(args.questions)
    trained = TrainedRouter()
    router = SoTRouter(trained, LoadPolicy())
    load = EngineLoad(running=3, waiting=0, max_num_seqs=256, kv_cache_usage=0.1)
    features = trained.encoder.encode(questions)
    row_of = {q: features[i : i + 1] for i, q in enumerate(questions)}

    rows: dict[str, dict[str, float]] = {}
    default_threads = torch.get_num_threads()
    for threads in sorted({1, 2, default_threads}):
        torch.set_num_threads(threads)
        rows[f"route(), {threads} torch thread(s)"] = timed(lambda q: router.route(q, load), questions, args.repeats)
    torch.set_num_threads(default_threads)
    rows["logistic head only"] = timed(lambda q: trained.model.probabilities(row_of[q]), questions, args.repeats)
    rows["load policy only"] = timed(lambda q: router.decide(0.9, load), questions, args.repeats)

    tokens = [len(trained.encoder._tokenizer(q, truncation=True, max_length=256)["input_ids"]) for q in questions]
    record = {
        "benchmark": "router_latency",
        "questions": str(args.questions),
        "n_questions": len(questions),
        "question_tokens": {"median": float(np.median(tokens)), "max": int(max(tokens))},
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "embedding_model": trained.model.embedding_model,
        "layers": list(trained.model.layers),
        "rows": rows,
        "load_average_at_end": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")

    print(f"SoT-R routing latency, {len(questions)} questions x {args.repeats} ({args.questions.name})")
    print(f"machine: {record['machine']['cpu']}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}")
    print(f"model: {trained.model.embedding_model}, layers {list(trained.model.layers)}")
    print(f"{'what':34} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in rows.items():
        print(f"{name:34} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} {r['max_ms']:8.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
