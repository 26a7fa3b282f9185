"""SoT vs normal decoding over a question file, same engine, same model, one run.

    python benchmarks/sot_vs_normal.py --model PATH [--questions ../shared/data/sot/vicuna80_questions.csv]
        [--limit N] [--points N --tokens-per-point T] [--eager] [--out benchmarks/results/NAME.json]

For each question it answers in both modes (order alternating, after one warm-up answer), and prints and
saves per question and overall: latency of each mode, speed-up, tokens, points, prefix-cache share.

``--points N --tokens-per-point T`` fixes the answer shape (skeleton of exactly N points, every point exactly
T tokens, the normal answer N*T tokens, EOS ignored): the fair comparison for random-weight models, whose
answers otherwise have arbitrary lengths. Without it, each mode writes what the model wants to write.
On the tiny random test model the numbers mean nothing about speed; they prove the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.vllm import VLLMEngine
from sotrag.app.pipeline import SoTPipeline


def read_questions(path: Path, limit: int | None) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        sample = f.read(2048)
        f.seek(0)
        delimiter = ";" if sample.splitlines()[0].count(";") > sample.splitlines()[0].count(",") else ","
        rows = list(csv.DictReader(f, delimiter=delimiter))
    questions = [r["request"].strip() for r in rows if r.get("request", "").strip()]
    return questions[:limit] if limit else questions


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except ImportError:
        pass
    return info


def fixed_shape(args: argparse.Namespace, sampling: SamplingConfig, sot: SoTConfig) -> tuple[SamplingConfig, SoTConfig]:
    n, t = args.points, args.tokens_per_point
    sampling = sampling.model_copy(
        update={
            "point_min_tokens": t,
            "point_max_tokens": t,
            "normal_min_tokens": n * t,
            "normal_max_tokens": n * t,
            "ignore_eos": True,
            "skeleton_max_tokens": max(sampling.skeleton_max_tokens, 48 * n),
        }
    )
    return sampling, sot.model_copy(update={"min_points": n, "max_points": n})


def row_of(question: str, normal: Any, sot: Any) -> dict[str, Any]:
    return {
        "question": question,
        "normal_s": normal.stats.total_s,
        "sot_s": sot.stats.total_s,
        "speedup": normal.stats.total_s / sot.stats.total_s if sot.stats.total_s else None,
        "sot_mode_used": sot.mode,
        "fallback_reason": sot.fallback_reason,
        "normal_tokens": normal.stats.tokens,
        "sot_tokens": sot.stats.tokens,
        "points": sot.stats.num_points,
        "skeleton_s": sot.stats.skeleton_s,
        "expansion_s": sot.stats.expansion_s,
        "normal_ttft_s": normal.stats.ttft_s,
        "sot_ttft_s": sot.stats.ttft_s,
        "sot_cached_share": sot.stats.cached_share,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    engine_cfg = EngineConfig(
        preset=args.preset, model=args.model, max_model_len=args.max_model_len, enforce_eager=args.enforce_eager
    )
    sampling = SamplingConfig(temperature=args.temperature, seed=args.seed)
    sot = SoTConfig(eager=args.eager)
    if args.points:
        sampling, sot = fixed_shape(args, sampling, sot)
    settings = Settings(engine=engine_cfg, sampling=sampling, sot=sot)
    questions = read_questions(Path(args.questions), args.limit)
    started = time.perf_counter()
    engine = await VLLMEngine.create(settings.engine)
    engine_start_s = time.perf_counter() - started
    pipeline = SoTPipeline(engine, settings)
    try:
        await pipeline.run(questions[0], mode="sot")  # warm-up: kernels, caches
        rows = []
        for i, question in enumerate(questions):
            order = ("normal", "sot") if i % 2 == 0 else ("sot", "normal")
            results = {mode: await pipeline.run(question, mode=mode) for mode in order}
            rows.append(row_of(question, results["normal"], results["sot"]))
            r = rows[-1]
            print(
                f"[{i + 1}/{len(questions)}] normal {r['normal_s']:.2f}s sot {r['sot_s']:.2f}s "
                f"x{r['speedup']:.2f} points {r['points']}",
                file=sys.stderr,
            )
    finally:
        await engine.aclose()
    speedups = [r["speedup"] for r in rows if r["speedup"]]
    return {
        "benchmark": "sot_vs_normal",
        "machine": machine(),
        "model": args.model,
        "engine_start_s": engine_start_s,
        "settings": {"sampling": sampling.model_dump(), "sot": sot.model_dump(), "questions": args.questions},
        "rows": rows,
        "summary": {
            "n": len(rows),
            "mean_speedup": statistics.fmean(speedups) if speedups else None,
            "median_speedup": statistics.median(speedups) if speedups else None,
            "p90_speedup": statistics.quantiles(speedups, n=10)[-1] if len(speedups) >= 2 else None,
            "mean_normal_s": statistics.fmean(r["normal_s"] for r in rows),
            "mean_sot_s": statistics.fmean(r["sot_s"] for r in rows),
            "fallbacks": sum(1 for r in rows if r["fallback_reason"]),
            "mean_sot_cached_share": statistics.fmean(r["sot_cached_share"] for r in rows),
        },
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"SoT vs normal: {report['model']} on {report['machine'].get('gpu') or report['machine']['platform']}"
    )
    for col in ("question", "normal s", "SoT s", "speed-up", "tokens n/SoT", "points", "cached"):
        table.add_column(col)
    for r in report["rows"]:
        table.add_row(
            r["question"][:48],
            f"{r['normal_s']:.2f}",
            f"{r['sot_s']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{r['normal_tokens']}/{r['sot_tokens']}",
            str(r["points"]),
            f"{r['sot_cached_share']:.0%}",
        )
    s = report["summary"]
    table.add_section()
    table.add_row(
        f"overall (n={s['n']}, median x{s['median_speedup']:.2f}, p90 x{s['p90_speedup'] or 0:.2f})",
        f"{s['mean_normal_s']:.2f}",
        f"{s['mean_sot_s']:.2f}",
        f"{s['mean_speedup']:.2f}x",
        "",
        "",
        f"{s['mean_sot_cached_share']:.0%}",
    )
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="hub id or local model folder")
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--questions", default="../shared/data/sot/vicuna80_questions.csv")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--points", type=int, default=None, help="fix the skeleton to exactly N points")
    parser.add_argument("--tokens-per-point", type=int, default=50)
    parser.add_argument("--eager", action="store_true")
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="random-weight models: use > 0 so skeleton lines differ"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--enforce-eager", action="store_true", help="skip torch.compile (faster start on CPU)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/sot_vs_normal_<model>.json)")
    args = parser.parse_args()
    if not Path(args.questions).is_file():
        parser.exit(2, f"error: question file {args.questions} does not exist\n")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    report = asyncio.run(run(args))
    print_table(report)
    out = Path(args.out or f"benchmarks/results/sot_vs_normal_{Path(args.model).name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
