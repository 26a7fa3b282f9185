"""SoT vs normal decoding through sotrag's own pipeline (``SoTPipeline`` on a ``VLLMEngine``), on a GPU.

Everything between the question and the answer is sotrag's code with its default SoT path: the chat template,
the UNGUIDED skeleton (plain decoding, bounded, ended by the parser once N points are complete), the
incremental skeleton parser, the concurrent point requests, assembly, stats. The model has random weights
(``load_format="dummy"``, logits near zero, so sampling is near uniform over the allowed set), so the answer's
shape comes from configuration, through the same mechanism a user has (``SamplingConfig.allowed_token_ids``):

- Sampling set (``Vocabulary.allowed_for(N)``, the same for every request of both modes and of the
  engine-direct reference; 36 ids for N = 7): the numbering tokens "\\n2. ".."\\nN. " that
  ``make_model_dir.py`` puts in the vocabulary (none above N: the skeleton's stop string is "\\n(N+1).")
  and 5 space-led whole words per numbering token. No end-of-turn and no bare newline. So the skeleton
  text is "w w w\\n7. w w w w\\n3. w w ..." and every numbered line ends on its own after a random number
  of words: p(numbering token) = 1/6, about 5 words (6 tokens) a line, as the SoT paper's skeletons
  (3-5 words, 6-8 tokens). The parser takes the lines in written order (the digits are random; it renumbers), and the
  pipeline stops the skeleton when N points are complete (its normal behaviour). The text before the
  first numbering token is a preamble, not a point (about 4 tokens, a real model's "Skeleton:").
- Lengths: ``point_min_tokens == point_max_tokens`` and ``normal_min_tokens == normal_max_tokens`` (normal
  length = the sum of the points); min_tokens keeps vLLM from checking stop strings before it.
- What differs from a user's run (docs/BENCHMARKS.md, "Benchmark-only settings and hooks", says the same):
  - settings a user also has: the sampling set (``--words-per-numbering`` sets its words per numbering token,
    so the skeleton's line length), fixed lengths, temperature 1, ``min_points = max_points``,
    ``context_share=0.9``, and ``skeleton_fallback="normal"``, since a guided retry cannot write "1. " from
    that set (a fallback is counted in the results);
  - a stand-in retriever (below): no embedding or FAISS search in any number;
  - ``--trace`` REBINDS the engine's ``AsyncLLM.add_request`` to a pass-through (``request_tap.RequestTap``): one
    wrapper call and a dict write per output, for the pipeline and engine-direct runs alike;
  - part ``headline-no-content-cache`` SWAPS the engine's content cache (``VLLMEngine._plain``) for a fresh
    encode of every content, for that part only;
  - mode ``auto`` (``--router``) runs the real ``SoTRouter`` and ``LoadPolicy`` on the live engine's load, but
    over question probabilities precomputed off the GPU machine (``router_probs.py``, ``PrecomputedClassifier``):
    the router's own encoder time (``route()``'s CPU cost) is NOT in the auto rows, nor on their event loop;
    ``auto-nolag`` also drops the loop-lag signal (``loop_lag=None``);
  - ``--sweep``, ``--max-num-seqs``, ``--max-batched``: other engine limits; part ``nocache``: an engine
    started without prefix caching;
  - the load rows run the arrivals, the pipeline and vLLM's output handling on one event loop with no HTTP or
    SSE, so a server's web cost is not in them; the startup heap is frozen once the engine is up, as
    ``sotrag serve`` does;
  - the engine-direct reference is no hook: it drives the same ``AsyncLLM`` with token ids beside the pipeline.
  (The old benchmark passed a 37,483-id set, which cost ~50 ms per request and hit SoT's 8 requests per answer
  8 times; and it guided the skeleton by regex, which its random model wrote to the regex's bounds.)

Context: a fixed-passage retriever hands the pipeline ``k`` passages of random words totalling the asked
number of tokens, fresh for every answer (so neither mode finds the question's prefix already cached);
the pipeline puts them in the shared system prompt as it does with real retrieval. Retrieval time is not
part of these numbers.

Arrivals (table4): N answers (``--arrivals``, or per rate ``--rate-arrivals``) at a Poisson rate, the gaps drawn
from one seeded generator per (seed, rate)
(the same arrivals, questions and contexts for every mode of a rate), rescaled so their mean is exactly
1/rate, and submitted at those absolute times (a late wake-up of the event loop does not push back the
later arrivals); ``offered_rate`` records the measured rate of the submissions. When the process's event
loop is saturated (it runs the pipeline AND vLLM's output handling), submissions still come late: the
offered rate says so.

Parts (``--parts``): headline (7 x 80 x 1500, SoT and eager SoT vs normal vs the same shapes driven directly
through the engine), table1 (points x tokens/point x context), table2 (Vicuna-80 questions, 7 points), table4
(Poisson arrivals, modes from ``--load-modes``: normal, sot, sot-eager, auto-nolag, plus auto with ``--router``),
headline-no-content-cache (the headline with VLLMEngine's content cache swapped for a fresh encode of every
content: a benchmark-only A/B of that one change), sweep (engine limits: for each of ``--sweep``'s
max_num_seqs:max_num_batched_tokens, a fresh engine, 2 headline reps and table4 at ``--sweep-rates``), nocache
(the headline with prefix caching off; run last).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import itertools
import json
import math
import random
import re
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_shapes as es
import request_tap

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.events import AnswerDelta, AnswerDone, PointDelta, SkeletonDelta
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.routing.base import QuestionClassifier
from sotrag.app.routing.loop_lag import LOOP_LAG  # the loop-lag monitor auto mode's router reads
from sotrag.retrieval.types import Passage

DEFAULT_QUESTION = "What are the most effective ways to make a web API respond faster?"
EAGER = False  # --eager: SoTConfig.eager, each point starts as soon as its skeleton line is complete
WORD = re.compile(r"^ [A-Za-z]{2,12}$")  # one whole, space-led word: one token per skeleton word
TAP: request_tap.RequestTap | None = None  # --trace: vLLM's per-request timestamps (a read-only pass-through)
GC = request_tap.GCPauses()  # this process's garbage collections, for every row


class FixedRetriever:
    """Returns the passages it was built with: the context of one benchmark answer."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        return self.passages[:k]


class Vocabulary:
    """Token ids the benchmark lets the random model sample (see the module docstring), and random-word
    text to build contexts from."""

    N_WORDS = 60
    WORDS_PER_NUMBERING = 5

    def __init__(self, tokenizer: Any, seed: int = 0) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        self.words = sorted(i for t, i in vocab.items() if WORD.match(tokenizer.convert_tokens_to_string([t])))
        rng = random.Random(seed)
        self.skeleton_words = sorted(rng.sample(self.words, min(self.N_WORDS, len(self.words))))
        self.vocab = vocab
        self.allowed = self.allowed_for(7)
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)

    def allowed_for(self, points: int) -> list[int]:
        """The sampling set of an answer of ``points`` points: the numbering tokens "\\n2. ".."\\nN. " (none
        above N: the pipeline's skeleton stop string is "\\n(N+1)."), and WORDS_PER_NUMBERING words per
        numbering token, so a line ends after about that many words whatever N is."""
        numbering = [self.vocab[t] for t in [f"Ċ{k}.Ġ" for k in range(2, max(2, points) + 1)] if t in self.vocab]
        if not numbering:  # a tokenizer without numbering tokens (the tiny CPU model): the guided retry's chars
            numbering = [self.vocab[t] for t in ("Ċ", "Ġ", ".", *"123456789") if t in self.vocab]
        words = self.skeleton_words[: self.WORDS_PER_NUMBERING * len(numbering)]
        return sorted({*words, *numbering})

    def text(self, n_tokens: int) -> str:
        return self.tokenizer.decode([self.rng.choice(self.words) for _ in range(n_tokens)])

    def passages(self, total_tokens: int, k: int = 5) -> list[Passage]:
        if total_tokens <= 0:
            return []
        per = total_tokens // k
        return [Passage(text=self.text(per).strip(), source=f"doc{j}.md", heading="Section", score=1.0)
                for j in range(k)]


def settings_for(points: int, tpp: int, vocab: Vocabulary, *, top_k: int = 5, eager: bool = False) -> Settings:
    return Settings(
        sampling=SamplingConfig(
            temperature=es.TEMPERATURE, skeleton_max_tokens=512,
            point_max_tokens=tpp, point_min_tokens=tpp,
            normal_max_tokens=points * tpp, normal_min_tokens=points * tpp,
            allowed_token_ids=vocab.allowed_for(points),
        ),
        sot=SoTConfig(min_points=points, max_points=points, fallback_min_points=2, eager=eager,
                      skeleton_fallback="normal"),
        passages_k=top_k, context_share=0.9,
    )


async def answer(engine: Any, vocab: Vocabulary, question: str, mode: str, points: int, tpp: int,
                 context_tokens: int, **kw: Any) -> dict:
    """One answer through the pipeline; returns its stats and when each kind of event first arrived."""
    eager = kw.pop("eager", EAGER)
    settings = settings_for(points, tpp, vocab, eager=eager, **kw)
    passages = vocab.passages(context_tokens)
    pipe = SoTPipeline(engine, settings, retriever=FixedRetriever(passages) if passages else None)
    firsts: dict[str, float] = {}
    result = None
    t0 = time.perf_counter()
    async for ev in pipe.stream(question, mode=mode):
        now = time.perf_counter() - t0
        kind = type(ev).__name__
        firsts.setdefault(kind, now)
        if isinstance(ev, AnswerDone):
            result = ev.result
    wall = time.perf_counter() - t0
    assert result is not None
    st = result.stats
    traced = {"requests": TAP.between(t0, t0 + wall)} if TAP is not None else {}
    visible = [firsts[k] for k in (SkeletonDelta.__name__, PointDelta.__name__, AnswerDelta.__name__) if k in firsts]
    answer_first = [firsts[k] for k in (PointDelta.__name__, AnswerDelta.__name__) if k in firsts]
    return {
        "mode": result.mode, "requested_mode": mode, "points": points, "tokens_per_point": tpp,
        "context_tokens": context_tokens, "wall_s": wall, "total_s": st.total_s, "ttft_s": st.ttft_s,
        "first_visible_s": min(visible) if visible else None,
        "first_answer_token_s": min(answer_first) if answer_first else None,
        "skeleton_s": st.skeleton_s, "expansion_s": st.expansion_s, "tokens": st.tokens,
        "skeleton_tokens": st.skeleton_tokens, "num_points": st.num_points,
        "point_tokens": [p.tokens for p in result.points],
        "point_prompt_tokens": [p.prompt_tokens for p in result.points],
        # when each point's task started, its first token and its end came (seconds from the answer's start,
        # the pipeline's own clock): where the time between the skeleton and the points goes
        "point_times_s": [[p.start_s, p.first_token_s, p.end_s] for p in result.points],
        "prompt_tokens": st.prompt_tokens.model_dump(), "cached_prompt_tokens": st.cached_prompt_tokens.model_dump(),
        "fallback_reason": result.fallback_reason, "route_reason": result.route_reason,
        "skeleton": result.skeleton[:400], "skeleton_mode": result.stats.skeleton_mode,
        "skeleton_retry_reason": result.skeleton_retry_reason,
        "skeleton_lines_tokens": (st.skeleton_tokens / st.num_points) if st.num_points else None,
        "skeleton_words_per_point": (statistics.fmean(len(p.title.split()) for p in result.points)
                                     if result.points else None),
        "gc": GC.between(t0, t0 + wall), **traced,
    }


def shape_ok(r: dict) -> bool:
    if r["mode"] == "normal":
        return r["tokens"] == r["points"] * r["tokens_per_point"]
    return r["num_points"] == r["points"] and all(t == r["tokens_per_point"] for t in r["point_tokens"])


async def pair(engine: Any, vocab: Vocabulary, question: str, points: int, tpp: int, ctx: int) -> dict:
    n = await answer(engine, vocab, question, "normal", points, tpp, ctx)
    s = await answer(engine, vocab, question, "sot", points, tpp, ctx)
    return {"normal": n, "sot": s, "speedup": n["wall_s"] / s["wall_s"], "shape_ok": shape_ok(n) and shape_ok(s)}


async def direct_same_shape(llm: Any, p: es.Prompts, n: dict, s: dict) -> dict | None:
    """The pipeline runs' exact lengths, driven straight through the same AsyncLLM on token ids."""
    if s["mode"] != "sot" or not s["point_prompt_tokens"]:
        print(f"SoT fell back ({s['fallback_reason']}); skeleton: {s['skeleton']!r}", flush=True)
        return None
    dn = await es.normal_exact(llm, p, n["prompt_tokens"]["normal"], n["tokens"])
    t0 = time.perf_counter()
    ds = await es.sot_exact(llm, p, s["prompt_tokens"]["skeleton"], s["skeleton_tokens"], s["point_prompt_tokens"],
                            s["tokens_per_point"])
    if TAP is not None:
        ds["requests"] = TAP.between(t0, time.perf_counter())
    return {"normal": dn, "sot": ds}


def ideal(points: int, tpp: int, skeleton_tokens: int, steps: dict[int, float]) -> float | None:
    """Decode steps only: normal length at the batch-1 step over skeleton (batch 1) + one point (batch N)."""
    if 1 not in steps:
        return None
    sn = steps.get(points) or _interp(steps, points)
    return es.ideal_speedup(points * tpp, skeleton_tokens, tpp, steps[1], sn)


def _interp(steps: dict[int, float], b: int) -> float:
    lo = max(k for k in steps if k <= b)
    hi = min((k for k in steps if k >= b), default=lo)
    if hi == lo:
        return steps[lo]
    return steps[lo] + (steps[hi] - steps[lo]) * (b - lo) / (hi - lo)


def context_seed(seed: int, rate: float, mode: str) -> int:
    """The seed of one load set's passages: its own for every (seed, rate, mode). With the same passages for every
    mode of a rate, each mode after the first found the contexts' KV blocks in vLLM's prefix cache and their ids in
    the engine's content cache, left there by the modes before it, and skipped their prefill and encoding."""
    return zlib.crc32(f"{seed}-{rate}-{mode}".encode())


def arrival_gaps(rate: float, arrivals: int, seed: int) -> list[float]:
    """Poisson gaps for ``arrivals`` answers at ``rate``/s, from a generator seeded by (seed, rate), rescaled so
    their mean is exactly 1/rate (the shape of a Poisson process, the rate it says)."""
    rng = random.Random(f"{seed}-{rate}")
    gaps = [rng.expovariate(rate) for _ in range(arrivals - 1)]
    scale = (len(gaps) / rate) / sum(gaps) if gaps else 1.0
    return [g * scale for g in gaps]


def rate_arrivals(spec: str) -> dict[float, int]:
    """``"64:160,32:96"`` -> {64.0: 160, 32.0: 96}: answers per rate where ``--arrivals`` is too few to fill
    the engine (a saturating rate needs more answers in flight than a burst of the default count)."""
    out: dict[float, int] = {}
    for item in (x for x in spec.split(",") if x):
        rate, n = item.split(":")
        out[float(rate)] = int(n)
    return out


def load_snapshot(engine: Any) -> dict:
    ld = engine.load()
    lag = LOOP_LAG.lag_s()
    return {"loop_lag_ms": None if lag is None else round(lag * 1e3, 2),
            "running": ld.running, "waiting": ld.waiting, "kv": round(ld.kv_cache_usage, 4),
            "itl_ms": None if ld.itl_s is None else round(ld.itl_s * 1e3, 3),
            "idle_itl_ms": None if ld.idle_itl_s is None else round(ld.idle_itl_s * 1e3, 3),
            "itl_ratio": None if ld.itl_ratio is None else round(ld.itl_ratio, 3),
            "tokens_per_step": None if ld.tokens_per_step is None else round(ld.tokens_per_step, 1)}


async def load_test(engine: Any, vocab: Vocabulary, questions: list[str], mode: str, rate: float, arrivals: int,
                    points: int, tpp: int, ctx: int, seed: int, router: Any = None) -> dict:
    """Poisson arrivals at ``rate`` per second, ``arrivals`` answers; latency and output tokens/s.
    ``mode``: normal, sot, sot-eager (SoT with eager expansion), auto (``router``) or auto-nolag (the same
    router without the loop-lag signal)."""
    eager = mode == "sot-eager"
    pipe_mode = "sot" if eager else "auto" if mode == "auto-nolag" else mode
    settings = settings_for(points, tpp, vocab, eager=eager)
    gaps = arrival_gaps(rate, arrivals, seed)
    ctx_vocab = Vocabulary(vocab.tokenizer, seed=context_seed(seed, rate, mode))
    tasks = []

    async def one(q: str, passages: list[Passage]) -> dict:
        pipe = SoTPipeline(engine, settings, retriever=FixedRetriever(passages) if passages else None, router=router)
        snap = load_snapshot(engine)
        t0 = time.perf_counter()
        first = None
        result = None
        async for ev in pipe.stream(q, mode=pipe_mode):
            if first is None and isinstance(ev, (SkeletonDelta, PointDelta, AnswerDelta)):
                first = time.perf_counter() - t0
            if isinstance(ev, AnswerDone):
                result = ev.result
        assert result is not None
        return {"start": t0, "latency_s": time.perf_counter() - t0, "first_visible_s": first,
                "tokens": result.stats.tokens, "mode": result.mode, "route_reason": result.route_reason,
                "route_cause": result.route_cause, "load": snap, "skeleton_tokens": result.stats.skeleton_tokens,
                "skeleton_mode": result.stats.skeleton_mode, "fallback": result.fallback_reason,
                "first_cached": result.stats.cached_prompt_tokens.skeleton or result.stats.cached_prompt_tokens.normal}

    contexts = [ctx_vocab.passages(ctx) for _ in range(arrivals)]  # built before the clock starts
    LOOP_LAG.watch()  # every mode records the loop's lag (auto's router also reads it)
    # Building the contexts above holds the loop for up to ~1 s: let that leave the lag window before the clock
    # starts, or auto's first answers are routed by the benchmark's own work (machine H's rows were).
    await asyncio.sleep(LOOP_LAG.window_s + 0.1)
    due = list(itertools.accumulate([0.0, *gaps]))  # arrival times: a late wake-up does not shift the rest
    t_start = time.perf_counter()
    submitted = []
    for i in range(arrivals):
        await asyncio.sleep(max(0.0, t_start + due[i] - time.perf_counter()))
        submitted.append(time.perf_counter())
        tasks.append(asyncio.create_task(one(questions[i % len(questions)], contexts[i])))
    rows = await asyncio.gather(*tasks)
    t_end = time.perf_counter()
    lat = sorted(r["latency_s"] for r in rows)
    ratios = [r["load"]["itl_ratio"] for r in rows if r["load"]["itl_ratio"] is not None]
    return {
        "mode": mode, "rate": rate, "arrivals": arrivals, "duration_s": t_end - t_start,
        "offered_rate": (arrivals - 1) / (submitted[-1] - submitted[0]) if arrivals > 1 else None,
        "p50_s": statistics.median(lat), "p90_s": _pct(lat, 0.90), "p99_s": _pct(lat, 0.99),
        "mean_s": statistics.fmean(lat),
        "first_visible_p50_s": statistics.median(r["first_visible_s"] for r in rows if r["first_visible_s"]),
        "output_tokens_per_s": sum(r["tokens"] for r in rows) / (t_end - t_start),
        "sot_share": sum(r["mode"] == "sot" for r in rows) / len(rows),
        "itl_ratio_p50": statistics.median(ratios) if ratios else None,
        "itl_ratio_max": max(ratios) if ratios else None,
        "waiting_max": max(r["load"]["waiting"] for r in rows),
        "loop_lag_ms_p50": statistics.median(r["load"]["loop_lag_ms"] or 0.0 for r in rows),
        "loop_lag_ms_max": max(r["load"]["loop_lag_ms"] or 0.0 for r in rows),
        "running_p50": statistics.median(r["load"]["running"] for r in rows),
        "skeleton_tokens_p50": statistics.median(r["skeleton_tokens"] for r in rows),
        "fallbacks": sum(bool(r["fallback"]) for r in rows),
        # the check that no set ran on another's contexts (context_seed): the system instruction only
        "first_request_cached_tokens_median": statistics.median(r["first_cached"] for r in rows),
        "latencies": [r["latency_s"] for r in rows],
        "gc": GC.between(t_start, t_end),
        "route_reasons": [r["route_reason"] for r in rows],
        "loads": [r["load"] for r in rows],
    }


async def load_test_direct(llm: Any, mode: str, rate: float, arrivals: int, seed: int, *, skel_prompt: int = 2160,
                           skel_tokens: int = 73, point_prompt: int = 2420, points: int = 7, tpp: int = 80) -> dict:
    """Table 4's arrivals driven straight through the AsyncLLM on token ids (no chat template, no regex
    guidance, no parser): what the engine alone sustains for the pipeline's request shapes."""
    gaps = arrival_gaps(rate, arrivals, seed)
    p = es.Prompts(context_seed(seed, rate, mode))  # prompts of its own: none found cached from another mode

    async def one() -> dict:
        t0 = time.perf_counter()
        if mode == "sot":
            r = await es.sot_exact(llm, p, skel_prompt, skel_tokens, [point_prompt] * points, tpp)
            return {"latency_s": time.perf_counter() - t0, "tokens": skel_tokens + points * tpp,
                    "first_visible_s": r["ttft_skeleton_s"]}
        r = await es.normal_exact(llm, p, skel_prompt, points * tpp)
        return {"latency_s": time.perf_counter() - t0, "tokens": points * tpp, "first_visible_s": r["ttft_s"]}

    tasks = []
    due = list(itertools.accumulate([0.0, *gaps]))
    t_start = time.perf_counter()
    for i in range(arrivals):
        await asyncio.sleep(max(0.0, t_start + due[i] - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    rows = await asyncio.gather(*tasks)
    t_end = time.perf_counter()
    lat = sorted(r["latency_s"] for r in rows)
    return {"mode": f"{mode} (engine direct)", "rate": rate, "arrivals": arrivals, "duration_s": t_end - t_start,
            "p50_s": statistics.median(lat), "p90_s": _pct(lat, 0.90), "p99_s": _pct(lat, 0.99),
            "mean_s": statistics.fmean(lat),
            "first_visible_p50_s": statistics.median(r["first_visible_s"] for r in rows),
            "output_tokens_per_s": sum(r["tokens"] for r in rows) / (t_end - t_start), "latencies": lat}


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)]


async def make_engine(a: argparse.Namespace, caching: bool, max_num_seqs: int | None = None,
                      batched: int | None = None):  # -> VLLMEngine
    from sotrag.app.engines.vllm import VLLMEngine
    from sotrag.app.serving.service import freeze_startup_heap

    extra: dict[str, Any] = {"seed": 0}
    if a.attention_backend:
        extra["attention_config"] = {"backend": a.attention_backend}
    if a.quantization:
        extra["quantization"] = a.quantization
    if a.kv_cache_dtype:
        extra["kv_cache_dtype"] = a.kv_cache_dtype
    cfg = EngineConfig(preset="gpu", model=a.model, dtype="bfloat16", load_format="dummy",
                       max_model_len=a.max_model_len, gpu_memory_utilization=a.gpu_mem,
                       max_num_seqs=max_num_seqs or a.max_num_seqs, max_num_batched_tokens=batched or a.max_batched,
                       enable_prefix_caching=caching, extra=extra, kv_cache_gib=a.kv_cache_gib,
                       enforce_eager=a.enforce_eager)
    engine = await VLLMEngine.create(cfg)
    freeze_startup_heap()  # what `sotrag serve` does once started (serving.service)
    return engine


def gpu_info() -> dict:
    import torch
    import vllm
    from vllm.platforms import current_platform

    try:
        name = current_platform.get_device_name(0)
    except Exception as e:
        name = f"none ({type(e).__name__})"
    return {"gpu": name, "vllm": vllm.__version__, "torch": torch.__version__, "host": host_info()}


def host_info() -> dict:
    """The host CPU beside the GPU: SoT's speed-up depends on it (the engine core's thread runs there)."""
    import os
    import platform
    import subprocess

    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
        mhz = fields.get("CPU max MHz", "").strip()
    except Exception:
        mhz = ""
    return {"cpu_model": model, "cpu_max_mhz": mhz, "cores": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


class PrecomputedClassifier(QuestionClassifier):
    """The trained question classifier's outputs, computed off the GPU machine (``router_probs.py``)."""

    def __init__(self, path: str) -> None:
        data = json.loads(Path(path).read_text())
        self.name, self.threshold = data["name"], float(data["threshold"])
        self.probs: dict[str, float] = data["probabilities"]

    def probability(self, question: str) -> float:
        return self.probs[question]


def load_router(spec: str | None, loop_lag: bool = True) -> Any:
    """A JSON from ``router_probs.py``: the real ``SoTRouter`` + ``LoadPolicy`` (``Settings().router``, so
    ``SOTRAG_ROUTER__*`` variables set its thresholds) over
    precomputed question probabilities; None: no router. ``loop_lag=False`` (mode ``auto-nolag``): the router
    a server gets without the loop-lag monitor (``SoTRouter(..., loop_lag=None)``: vLLM's stats alone), for an
    A/B of that signal in one engine start."""
    if not spec:
        return None
    from sotrag.app.routing.factory import policy_from_config
    from sotrag.app.routing.router import SoTRouter

    monitor = LOOP_LAG if loop_lag else None
    return SoTRouter(PrecomputedClassifier(spec), policy_from_config(Settings().router), loop_lag=monitor)


async def main_async(a: argparse.Namespace) -> None:
    Vocabulary.WORDS_PER_NUMBERING = a.words_per_numbering  # the skeleton's line length, for every request
    out = Path(a.out)
    res: dict[str, Any] = {"label": a.label, "args": vars(a), **gpu_info()}

    def save() -> None:
        out.write_text(json.dumps(res, indent=1, default=str))

    questions = [DEFAULT_QUESTION]
    if a.questions:
        with open(a.questions, newline="") as f:
            questions = [r["request"].strip() for r in csv.DictReader(f) if r["request"].strip()]
    parts = a.parts.split(",")
    t0 = time.perf_counter()
    steps: dict[int, float] = {}
    if set(parts) - {"sweep", "nocache"}:
        engine = await make_engine(a, caching=True)
        res["engine_start_s"] = time.perf_counter() - t0
        vocab = Vocabulary(engine.tokenizer)
        v = len(engine.tokenizer)
        es.TOKEN_RANGE = (min(300, v // 4), min(30000, v))  # ordinary ids (the tiny CPU test model has ~600)
        res["allowed_token_ids"] = len(vocab.allowed)
        print(f"[{a.label}] engine up in {res['engine_start_s']:.1f}s; {len(vocab.allowed)} allowed ids", flush=True)
        llm = engine._llm  # the same AsyncLLM, for the engine-direct reference
        if a.trace:
            global TAP
            TAP = request_tap.RequestTap(llm)
        es.ALLOWED_TOKEN_IDS = vocab.allowed  # the direct runs sample like the pipeline's
        try:
            # warm-up (regex compilation paths, CUDA graphs at several batch sizes)
            for n in (3, 7, 10):
                await pair(engine, vocab, questions[0], n, 16, 200)
            res["steps"] = await es.decode_steps(llm, [1, 2, 3, 4, 5, 7, 8, 10, 16, 32, 64], context_tokens=1500,
                                                 n_tokens=48)
            steps = {r["batch"]: r["step_ms"] for r in res["steps"]}
            print(f"[{a.label}] steps " + " ".join(f"B{b}={v:.2f}" for b, v in steps.items()), flush=True)
            save()
            if "headline" in parts:
                res["headline"] = await headline(a, engine, vocab, questions, llm, steps, a.reps, eager=not a.no_eager)
                save()
            if "headline-no-content-cache" in parts:
                # Benchmark-only A/B of one change: VLLMEngine's content cache (chat_ids.PlainEncoder) swapped
                # for a plain encode of every content, as the engine did before; nothing else differs.
                from sotrag.app.engines import chat_ids

                cached_plain = engine._chat.plain
                engine._chat.plain = functools.partial(chat_ids.encode_plain, engine._tokenizer)
                try:
                    res["headline_no_content_cache"] = await headline(a, engine, vocab, questions, llm, steps,
                                                                      a.reps, eager=False)
                finally:
                    engine._chat.plain = cached_plain
                save()
            if "table1" in parts:
                res["table1"] = []
                for ctx in [int(c) for c in a.table1_contexts.split(",")]:
                    for n in (3, 5, 7, 10):
                        for tpp in (40, 80, 120):
                            pr = await pair(engine, vocab, questions[len(res["table1"]) % len(questions)], n, tpp, ctx)
                            pr["ideal_speedup"] = ideal(n, tpp, pr["sot"]["skeleton_tokens"], steps)
                            res["table1"].append(pr)
                            print(f"[{a.label}] t1 N={n:>2} L={tpp:>3} ctx={ctx:>4}: "
                                  f"normal {pr['normal']['wall_s']*1e3:6.0f} sot {pr['sot']['wall_s']*1e3:5.0f} "
                                  f"x{pr['speedup']:.2f} ideal x{pr['ideal_speedup']:.2f}"
                                  f" ok={pr['shape_ok']}", flush=True)
                            save()
            if "table2" in parts:
                res["table2"] = []
                for q in questions[: a.table2_questions]:
                    pr = await pair(engine, vocab, q, 7, a.table2_tpp, 0)
                    res["table2"].append(pr)
                    save()
                sp = sorted(r["speedup"] for r in res["table2"])
                print(f"[{a.label}] t2 {len(sp)} questions: mean x{statistics.fmean(sp):.2f} p10 x{_pct(sp, 0.1):.2f} "
                      f"p90 x{_pct(sp, 0.9):.2f}", flush=True)
            if "table4" in parts:
                res["table4"] = []
                await table4(a, engine, vocab, questions, a.rates, a.load_modes, a.label, res["table4"], save)
            if "table4direct" in parts:
                res["table4direct"] = []
                for rate in [float(r) for r in a.rates.split(",")]:
                    for mode in a.load_modes.split(","):
                        r = await load_test_direct(llm, mode, rate, a.arrivals, seed=a.seed)
                        res["table4direct"].append(r)
                        print(f"[{a.label}] t4direct rate={rate:>5} {mode:>6}: p50 {r['p50_s']:.2f}s "
                              f"p99 {r['p99_s']:.2f}s {r['output_tokens_per_s']:.0f} tok/s", flush=True)
                        save()
        finally:
            save()
            await engine.aclose()
    if "sweep" in parts:
        res["sweep"] = []
        for spec in a.sweep.split(","):
            seqs, batched = (int(x) for x in spec.split(":"))
            t1 = time.perf_counter()
            engine = await make_engine(a, caching=True, max_num_seqs=seqs, batched=batched)
            row: dict[str, Any] = {"max_num_seqs": seqs, "max_num_batched_tokens": batched,
                                   "engine_start_s": time.perf_counter() - t1}
            try:
                vocab = Vocabulary(engine.tokenizer)
                v = len(engine.tokenizer)
                es.TOKEN_RANGE = (min(300, v // 4), min(30000, v))
                es.ALLOWED_TOKEN_IDS = vocab.allowed
                for n in (3, 7):
                    await pair(engine, vocab, questions[0], n, 16, 200)
                row["headline"] = await headline(a, engine, vocab, questions, engine._llm, steps, 2, eager=False)
                row["table4"] = []
                await table4(a, engine, vocab, questions, a.sweep_rates, "normal,sot",
                             f"{a.label} sweep {seqs}:{batched}", row["table4"], save)
            finally:
                res["sweep"].append(row)
                save()
                await engine.aclose()
    if "nocache" in parts:
        t1 = time.perf_counter()
        engine = await make_engine(a, caching=False)
        res["nocache_engine_start_s"] = time.perf_counter() - t1
        vocab = Vocabulary(engine.tokenizer)
        try:
            await pair(engine, vocab, questions[0], 7, 16, 200)
            runs = []
            for i in range(a.reps):
                pr = await pair(engine, vocab, questions[i % len(questions)], 7, 80, 1500)
                runs.append(pr)
                print(f"[{a.label}] nocache rep {i}: normal {pr['normal']['wall_s']*1e3:.0f} sot "
                      f"{pr['sot']['wall_s']*1e3:.0f} x{pr['speedup']:.2f}", flush=True)
            res["nocache"] = summarize_headline(runs, steps)
        finally:
            save()
            await engine.aclose()
    res["total_s"] = time.perf_counter() - t0
    save()


async def headline(a: argparse.Namespace, engine: Any, vocab: Vocabulary, questions: list[str], llm: Any,
                   steps: dict[int, float], reps: int, *, eager: bool) -> dict:
    """7 points x 80 tokens, 1500 context: normal vs SoT (and eager SoT) through the pipeline, and the same
    shapes driven straight through the engine, all on one engine, interleaved per rep."""
    runs = []
    p = es.Prompts(11)
    for i in range(reps):
        q = questions[i % len(questions)]
        pr = await pair(engine, vocab, q, 7, 80, 1500)
        pr["direct"] = await direct_same_shape(llm, p, pr["normal"], pr["sot"])
        if eager:
            pr["sot_eager"] = await answer(engine, vocab, q, "sot", 7, 80, 1500, eager=True)
            pr["eager_speedup"] = pr["normal"]["wall_s"] / pr["sot_eager"]["wall_s"]
        runs.append(pr)
        if TAP is not None and pr["direct"]:
            pr["trace"] = {"pipeline": request_tap.split(pr["sot"]["requests"], lambda rid: "skeleton" in rid),
                           "direct": request_tap.split(pr["direct"]["sot"]["requests"], _direct_skeleton(pr))}
            print(f"[{a.label}] trace rep {i}: {_trace_line(pr['trace']['pipeline'])} || direct: "
                  f"{_trace_line(pr['trace']['direct'])} || gc {pr['sot']['gc']}", flush=True)
        d = pr["direct"] or {"normal": {"total_s": math.nan}, "sot": {"total_s": math.nan}}
        eag = f" eager {pr['sot_eager']['wall_s']*1e3:.0f}" if eager else ""
        print(f"[{a.label}] headline rep {i}: pipeline normal {pr['normal']['wall_s']*1e3:.0f} sot "
              f"{pr['sot']['wall_s']*1e3:.0f} (x{pr['speedup']:.2f}, skel {pr['sot']['skeleton_tokens']} tok "
              f"{pr['sot']['skeleton_s']*1e3:.0f}ms {pr['sot']['skeleton_mode']}){eag} | direct normal "
              f"{d['normal']['total_s']*1e3:.0f} sot {d['sot']['total_s']*1e3:.0f} | shape_ok={pr['shape_ok']}",
              flush=True)
    h = summarize_headline(runs, steps)
    if eager:
        h["sot_eager_s"] = statistics.median(r["sot_eager"]["wall_s"] for r in runs)
        h["eager_speedup"] = h["normal_s"] / h["sot_eager_s"]
    return h


async def table4(a: argparse.Namespace, engine: Any, vocab: Vocabulary, questions: list[str], rates: str,
                 modes: str, label: str, rows: list[dict], save: Any) -> None:
    """Poisson load: every mode at each rate, on the same arrivals; modes interleaved within a rate.
    ``sot-eager`` runs only at ``--eager-rates``. Rows go into ``rows`` (saved after each)."""
    mode_list = [m for m in modes.split(",") if m] + (["auto"] if a.router else [])
    if "auto-nolag" in mode_list and not a.router:
        raise SystemExit("--load-modes auto-nolag needs --router")
    eager_rates = {float(r) for r in a.eager_rates.split(",") if r}
    arrivals_at = rate_arrivals(a.rate_arrivals)
    for rate in [float(r) for r in rates.split(",")]:
        for mode in mode_list:
            if mode == "sot-eager" and rate not in eager_rates:
                continue
            r = await load_test(engine, vocab, questions, mode, rate, arrivals_at.get(rate, a.arrivals), 7, 80,
                                1500, seed=a.seed,
                                router=load_router(a.router, loop_lag=mode == "auto")
                                if mode in ("auto", "auto-nolag") else None)  # fresh state
            rows.append(r)
            save()
            print(f"[{label}] t4 rate={rate:>5} (offered {r['offered_rate']:.2f}) {mode:>9}: p50 {r['p50_s']:.2f}s "
                  f"p99 {r['p99_s']:.2f}s first {r['first_visible_p50_s']:.2f}s {r['output_tokens_per_s']:.0f} tok/s"
                  f" sot_share={r['sot_share']:.2f} itl x{r['itl_ratio_p50'] or 0:.2f}/x{r['itl_ratio_max'] or 0:.2f}"
                  f" waiting<={r['waiting_max']} run~{r['running_p50']:.0f} skel~{r['skeleton_tokens_p50']:.0f}"
                  f" fb={r['fallbacks']} lag~{r['loop_lag_ms_p50']:.1f}/{r['loop_lag_ms_max']:.0f}ms", flush=True)


def _direct_skeleton(pr: dict) -> Any:
    """The engine-direct answer's skeleton: its first request (``sot_exact`` sends it before the points)."""
    requests = pr["direct"]["sot"]["requests"]
    first = min(requests, key=lambda rid: requests[rid]["call"]) if requests else None
    return lambda rid: rid == first


def _trace_line(t: dict) -> str:
    """ms from the answer's start: the skeleton's last output, then the points' stages (min/median/max)."""
    sk = t["skeleton"] or {}
    parts = [f"skel call {sk.get('call', math.nan):.0f} last {sk.get('last_recv', math.nan):.0f}"]
    for stage in request_tap.STAGES[:-1]:
        if f"points_{stage}_median" in t:
            parts.append(f"{stage.removesuffix('_ts')} {t[f'points_{stage}_min']:.0f}/"
                         f"{t[f'points_{stage}_median']:.0f}/{t[f'points_{stage}_max']:.0f}")
    return " ".join(parts)


def summarize_headline(runs: list[dict], steps: dict[int, float]) -> dict:
    med = statistics.median
    s = {
        "reps": len(runs), "shape_ok": all(r["shape_ok"] for r in runs),
        "normal_s": med(r["normal"]["wall_s"] for r in runs), "sot_s": med(r["sot"]["wall_s"] for r in runs),
        "normal_first_visible_s": med(r["normal"]["first_visible_s"] for r in runs),
        "sot_first_visible_s": med(r["sot"]["first_visible_s"] for r in runs),
        "sot_first_answer_token_s": med(r["sot"]["first_answer_token_s"] for r in runs),
        "sot_skeleton_s": med(r["sot"]["skeleton_s"] for r in runs),
        "sot_expansion_s": med(r["sot"]["expansion_s"] for r in runs),
        "skeleton_tokens": med(r["sot"]["skeleton_tokens"] for r in runs),
        "runs": runs,
    }
    s["speedup"] = s["normal_s"] / s["sot_s"]
    s["ideal_speedup"] = ideal(7, 80, int(s["skeleton_tokens"]), steps)
    s["fallbacks"] = sum(r["sot"]["mode"] != "sot" for r in runs)
    if all(r.get("direct") for r in runs):
        s["direct_normal_s"] = med(r["direct"]["normal"]["total_s"] for r in runs)
        s["direct_sot_s"] = med(r["direct"]["sot"]["total_s"] for r in runs)
        s["direct_speedup"] = s["direct_normal_s"] / s["direct_sot_s"]
        s["sot_overhead"] = s["sot_s"] / s["direct_sot_s"] - 1
        s["normal_overhead"] = s["normal_s"] / s["direct_normal_s"] - 1
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="headline,table1,table2,table4,nocache",
                    help="headline, table1, table2, table4, sweep, nocache (engine without prefix caching), "
                    "headline-no-content-cache (swaps the engine's content cache for a fresh encode: an A/B)")
    ap.add_argument("--questions", default=None, help="CSV with a 'request' column (Vicuna-80)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--table2-questions", type=int, default=80)
    ap.add_argument("--table2-tpp", type=int, default=80)
    ap.add_argument("--rates", default="1,2,4,8,16")
    ap.add_argument("--arrivals", type=int, default=32)
    ap.add_argument("--rate-arrivals", default="", help="RATE:N,...: N answers at that table4 rate instead of "
                    "--arrivals (a saturating rate needs more answers than a burst of the default count)")
    ap.add_argument("--load-modes", default="normal,sot")
    ap.add_argument("--eager", action="store_true", help="SoTConfig.eager for every SoT answer")
    ap.add_argument("--router", default=None, help="router_probs.py JSON: adds mode=auto to table4 (the real router "
                    "and load policy over precomputed question probabilities: route()'s encoder time is not in it)")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-num-seqs", type=int, default=None, help="None: the gpu preset's")
    ap.add_argument("--max-batched", type=int, default=None, help="max_num_batched_tokens; None: the gpu preset's")
    ap.add_argument("--kv-cache-gib", type=float, default=None, help="CPU smoke runs: a small KV cache")
    ap.add_argument("--enforce-eager", action="store_true", help="CPU smoke runs: no compilation")
    ap.add_argument("--seed", type=int, default=0, help="arrivals: one generator per (seed, rate)")
    ap.add_argument("--words-per-numbering", type=int, default=Vocabulary.WORDS_PER_NUMBERING,
                    help="words in the sampling set per numbering token: a skeleton line ends after about this "
                         "many words (5, the runs recorded so far, gave 6-8 words a line from the dummy model; "
                         "the SoT paper's skeletons have 3-5)")
    ap.add_argument("--eager-rates", default="1,16", help="table4 rates at which the sot-eager mode runs")
    ap.add_argument("--sweep", default="64:2048,256:2048,256:8192", help="max_num_seqs:max_num_batched_tokens,...")
    ap.add_argument("--sweep-rates", default="16")
    ap.add_argument("--table1-contexts", default="0,1500,4000")
    ap.add_argument("--no-eager", action="store_true", help="headline without the eager SoT run")
    ap.add_argument("--trace", action="store_true", help="headline: vLLM's per-request timestamps for the pipeline's "
                    "and the engine-direct SoT answers (benchmarks/gpu/request_tap.py rebinds AsyncLLM.add_request to "
                    "a pass-through that records them; outputs unchanged)")
    ap.add_argument("--gpu-mem", type=float, default=0.85)
    ap.add_argument("--attention-backend", default="FLASH_ATTN")
    ap.add_argument("--quantization", default=None)
    ap.add_argument("--kv-cache-dtype", default=None)
    args = ap.parse_args()
    global EAGER
    EAGER = args.eager
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
