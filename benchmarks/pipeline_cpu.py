"""The SoT pipeline's own CPU cost per answer, apart from the engine's.

    python benchmarks/pipeline_cpu.py [--answers 200] [--points 7] [--point-tokens 80] [--out FILE]
        [--tokenizer MODEL_DIR --context-tokens 1500]

The engine here is a zero-cost stand-in (``InstantEngine`` below, defined only in this script): it streams a
fixed ``points``-line skeleton and ``point-tokens`` one-token deltas per point, with no model behind it. What is
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
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sotrag.app.config import SamplingConfig, Settings, SoTConfig
from sotrag.app.engines import chat_ids
from sotrag.app.engines.base import ChatPrompt, EngineBase, EngineLoad, GenerationDelta, GenerationRequest
from sotrag.app.pipeline import SoTPipeline
from sotrag.prompts.messages import ChatMessage
from sotrag.retrieval.types import Passage


class InstantEngine(EngineBase):
    """Streams canned text at no cost: a benchmark stand-in, never used outside this script."""

    model_name = "instant"
    max_model_len = 8192

    def __init__(self, points: int, point_tokens: int, tokenizer: Any = None, *, content_cache: bool = True) -> None:
        self.skeleton = "".join(f"{i}. Point number {i} here\n" for i in range(1, points + 1))
        self.point_tokens = point_tokens
        self.calls: list[tuple[str, float]] = []  # (request id, when generate was called): the hand-over spans
        self.skeleton_end = 0.0
        self.tokenizer = tokenizer
        self.plain = chat_ids.PlainEncoder(tokenizer) if tokenizer is not None and content_cache else None
        self.template = chat_ids.TemplateEncoder(tokenizer) if tokenizer is not None and content_cache else None

    def render_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> str:
        return "\n".join(m.content for m in messages)

    def encode_chat(self, messages: Sequence[ChatMessage], *, continue_final_message: bool = False) -> ChatPrompt:
        if self.tokenizer is not None:  # as VLLMEngine.encode_chat
            return chat_ids.encode_chat(
                self.tokenizer, messages, continue_final_message=continue_final_message, plain=self.plain,
                template=self.template,
            )
        text = self.render_chat(messages)
        return ChatPrompt(text=text, token_ids=tuple(range(len(text) // 4)))

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.plain(text) if self.plain else chat_ids.encode_plain(self.tokenizer, text))
        return len(text) // 4

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        self.calls.append((request.request_id, time.perf_counter()))
        if "skeleton" in request.request_id:
            pieces = [self.skeleton[i : i + 3] for i in range(0, len(self.skeleton), 3)]
        else:
            pieces = [" word"] * self.point_tokens
        for n, piece in enumerate(pieces):
            if n % 8 == 0:
                await asyncio.sleep(0)  # let the other requests of the answer stream too
            last = n == len(pieces) - 1
            if last and "skeleton" in request.request_id:
                self.skeleton_end = time.perf_counter()
            yield GenerationDelta(piece, 1, 100, 0, "length" if last else None, token_ids=(n,))

    async def abort(self, request_id: str) -> None:
        return None

    def load(self) -> EngineLoad:
        return EngineLoad(running=0, waiting=0, max_num_seqs=256)

    async def aclose(self) -> None:
        return None


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
            engine = InstantEngine(args.points, args.point_tokens, tokenizer, content_cache=cache)
            retriever = FixedRetriever(texts) if texts else None
            pipeline = SoTPipeline(engine, settings, retriever=retriever)  # type: ignore[arg-type]
            first = await pipeline.run(question, mode="sot")
            assert first.mode == "sot" and len(first.points) == args.points, first
            rows[mode + suffix] = await _rows(pipeline, question, mode, args.answers)
    return rows


async def _rows(pipeline: SoTPipeline, question: str, mode: str, answers: int) -> dict[str, Any]:
    """CPU per answer, plus two wall-time spans of SoT answers: from the answer's start to its skeleton request,
    and from the skeleton's last delta to the first point request (the hand-over)."""
    engine = pipeline.engine
    assert isinstance(engine, InstantEngine)
    per_answer: list[float] = []
    before_skeleton: list[float] = []
    hand_over: list[float] = []
    for _ in range(answers):
        engine.calls.clear()
        wall = time.perf_counter()
        start = time.process_time()
        await pipeline.run(question, mode=mode)  # type: ignore[arg-type]
        per_answer.append((time.process_time() - start) * 1000)
        first = engine.calls[0][1]
        points = [t for rid, t in engine.calls if "point" in rid]
        if mode == "sot" and points:
            before_skeleton.append((first - wall) * 1000)
            hand_over.append((min(points) - engine.skeleton_end) * 1000)
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
        "engine": "InstantEngine (zero-cost stand-in defined in the benchmark; normal mode streams one 80-token"
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
