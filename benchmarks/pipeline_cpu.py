"""The SoT pipeline's own CPU cost per answer, apart from the engine's.

    python benchmarks/pipeline_cpu.py [--answers 200] [--points 7] [--point-tokens 80] [--out FILE]
        [--tokenizer MODEL_DIR --context-tokens 1500]

The engine here is the tests' scripted engine (``tests/fakes.py``'s ``ScriptedEngine``, its replies memoized so
it costs next to nothing): it streams a fixed ``points``-line skeleton word by word and ``point-tokens``
one-token deltas per point, with no model behind it. What is
timed is everything else an answer costs in the process that runs sotrag: building each request, parsing the
skeleton as it streams, fanning out the points, the event queue, assembling the answer and its stats. It tells
how many answers per second ONE event loop can drive before the pipeline itself is the limit, and how much of
the pipeline-vs-engine-direct overhead of docs/BENCHMARKS.md its Python can explain. It says nothing about
vLLM's own per-request CPU (scheduling, detokenization), which comes on top in the same process.

With ``--tokenizer`` (a model folder with a Hugging Face tokenizer and chat template, e.g. the GPU benchmark's
``benchmarks/gpu/make_model_dir.py`` output) the stand-in builds every prompt's ids as ``VLLMEngine`` does
(``chat_ids.encode_chat``, content encoded as plain text), and ``--context-tokens`` hands the pipeline that many
tokens of passages, as retrieval would. The rows then include tokenization, once with the engine's content
cache (``chat_ids.PlainEncoder``, what ``VLLMEngine`` uses) and once encoding every content afresh (what it did
before): the only difference between the two rows is that one argument.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: its tests' helpers

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines import chat_ids
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage
from tests.fakes import Pieces, ScriptedEngine


def instant_engine(
    points: int, point_tokens: int, tokenizer: Any = None, *, content_cache: bool = True
) -> ScriptedEngine:
    """The stand-in: a ``points``-line skeleton, ``point_tokens`` one-token deltas per point (and for a normal
    answer), a yield to the loop every 8 deltas. Without a tokenizer, prompts are text only (no ids to build)."""
    words = Pieces([" word"] * point_tokens)
    skeleton = "".join(f"{i}. Point number {i} here\n" for i in range(1, points + 1))
    return ScriptedEngine(
        {"skeleton": skeleton, "point": words, "normal": words}, yield_every=8, finish="length",
        max_num_seqs=256, model_name="instant", tokenizer=tokenizer, content_cache=content_cache,
        prompt_ids=tokenizer is not None,
    )


class FixedRetriever:
    """Hands every answer the same passages, each made unique to the answer (a counter in front), so that no
    cache finds one answer's context from an earlier answer: different questions retrieve different text."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls = 0

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        self.calls += 1
        return [
            Passage(text=f"({self.calls}) {t}", source=f"doc{j}.md", heading="Section", score=1.0)
            for j, t in enumerate(self.texts[:k])
        ]


def context_texts(tokenizer: Any, tokens: int, k: int = 5) -> list[str]:
    """``k`` passages of about ``tokens`` tokens in all, of words the tokenizer knows (this file's own words)."""
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()]
    texts = []
    for j in range(k):
        text, n = "", 0
        i = j * 7
        while n < tokens // k:
            text += " " + words[i % len(words)]
            i += 13
            n = len(chat_ids.encode_plain(tokenizer, text))
        texts.append(text.strip())
    return texts


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        sot=SoTConfig(min_points=args.points, max_points=args.points, min_words=3, max_words=5),
        sampling=SamplingConfig(point_max_tokens=args.point_tokens),
    )
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    texts = context_texts(tokenizer, args.context_tokens) if tokenizer is not None and args.context_tokens else []
    variants = [("", True)] if tokenizer is None else [(" (content cache)", True), (" (no content cache)", False)]
    question = "What are tips to sleep better?"
    rows: dict[str, Any] = {}
    for suffix, cache in variants:
        for mode in ("sot", "normal"):
            engine = instant_engine(args.points, args.point_tokens, tokenizer, content_cache=cache)
            retriever = FixedRetriever(texts) if texts else None
            pipeline = SoTPipeline(engine, settings, retriever=retriever)
            first = await pipeline.run(question, mode="sot")
            assert first.mode == "sot" and len(first.points) == args.points, first
            rows[mode + suffix] = await _rows(pipeline, question, mode, args.answers)
    return rows


async def _rows(pipeline: SoTPipeline, question: str, mode: str, answers: int) -> dict[str, Any]:
    """CPU per answer, plus two wall-time spans of SoT answers: from the answer's start to its skeleton request,
    and from the skeleton's last delta to the first point request (the hand-over)."""
    engine = pipeline.engine
    assert isinstance(engine, ScriptedEngine)
    per_answer: list[float] = []
    before_skeleton: list[float] = []
    hand_over: list[float] = []
    for _ in range(answers):
        engine.sent_at.clear()
        engine.requests.clear()
        engine.streamed.clear()
        engine.ended_at.clear()
        wall = time.perf_counter()
        start = time.process_time()
        await pipeline.run(question, mode=mode)
        per_answer.append((time.process_time() - start) * 1000)
        first_id, first = engine.sent_at[0]
        points = [t for rid, t in engine.sent_at if "point" in rid]
        if mode == "sot" and points:
            before_skeleton.append((first - wall) * 1000)
            hand_over.append((min(points) - engine.ended_at[first_id]) * 1000)
    row: dict[str, Any] = {
        "cpu_ms_p50": round(statistics.median(per_answer), 3),
        "cpu_ms_mean": round(statistics.fmean(per_answer), 3),
        "answers_per_s_one_core": round(1000 / statistics.fmean(per_answer), 1),
    }
    if hand_over:
        row["start_to_skeleton_request_ms_p50"] = round(statistics.median(before_skeleton), 3)
        row["skeleton_end_to_first_point_request_ms_p50"] = round(statistics.median(hand_over), 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--points", type=int, default=7)
    parser.add_argument("--point-tokens", type=int, default=80)
    parser.add_argument("--tokenizer", default=None, help="model folder: build prompt ids with its tokenizer")
    parser.add_argument("--context-tokens", type=int, default=0, help="passages handed to every answer (tokens)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    result = {
        "benchmark": "pipeline_cpu",
        "command": f"python benchmarks/pipeline_cpu.py --answers {args.answers} --points {args.points} "
        f"--point-tokens {args.point_tokens}"
        + (f" --tokenizer {args.tokenizer} --context-tokens {args.context_tokens}" if args.tokenizer else ""),
        "engine": "ScriptedEngine of tests/fakes.py (memoized replies; normal mode streams one point-tokens"
        " answer the same way)",
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "shape": {"points": args.points, "point_tokens": args.point_tokens,
                  "tokenizer": args.tokenizer, "context_tokens": args.context_tokens},
        "rows": rows,
    }
    for mode, row in rows.items():
        print(f"{mode:26s} CPU per answer p50 {row['cpu_ms_p50']:.2f} ms, mean {row['cpu_ms_mean']:.2f} ms"
              f" -> {row['answers_per_s_one_core']} answers/s on one core"
              + (f"; start -> skeleton request {row['start_to_skeleton_request_ms_p50']:.2f} ms, skeleton end -> "
                 f"first point {row['skeleton_end_to_first_point_request_ms_p50']:.2f} ms (wall, p50)"
                 if "skeleton_end_to_first_point_request_ms_p50" in row else ""))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
