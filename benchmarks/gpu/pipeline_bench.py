"""SoT vs normal decoding through sotrag's own pipeline (``SoTPipeline`` on a ``VLLMEngine``), on a GPU.

Everything between the question and the answer is sotrag's code: the chat template, the regex-guided
skeleton, the incremental skeleton parser, the concurrent point requests, assembly, stats. The model has
random weights (``load_format="dummy"``), so the answer's shape is fixed by configuration, not by the
model: ``SoTConfig(min_points=max_points=N)`` makes the skeleton regex demand exactly N points, and
``point_min_tokens == point_max_tokens`` (``normal_*`` likewise, normal length = the sum of the points)
fix every length. Sampling is at temperature 1 (greedy decoding of a random model repeats one skeleton line,
which the parser rightly drops as a duplicate) and restricted (``allowed_token_ids``, see ``Vocabulary``) to
whole words and numbering tokens: a random model otherwise spells every skeleton "word" out of many short
tokens (up to the regex's 24 characters), which no real model does. A skeleton line then costs ~10 tokens
(the random model always writes the 8 words the regex allows; a real model's line is ~6-10 tokens).

Context: a fixed-passage retriever hands the pipeline ``k`` passages of random words totalling the asked
number of tokens, fresh for every answer (so neither mode finds the question's prefix already cached);
the pipeline puts them in the shared system prompt as it does with real retrieval. Retrieval time is not
part of these numbers.

Parts (``--parts``): headline (7 x 80 x 1500, SoT vs normal vs the same shapes driven directly through the
engine), table1 (points x tokens/point x context), table2 (Vicuna-80 questions, 7 points), table4 (Poisson
arrivals), nocache (the headline on a second engine with prefix caching off; run last).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_shapes as es

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.events import AnswerDelta, AnswerDone, PointDelta, SkeletonDelta
from sotrag.app.pipeline import SoTPipeline
from sotrag.retrieval.types import Passage

DEFAULT_QUESTION = "What are the most effective ways to make a web API respond faster?"
EAGER = False  # --eager: SoTConfig.eager, each point starts as soon as its skeleton line is complete
WORD = re.compile(r"^ [A-Za-z]{2,12}$")  # one whole, space-led word: one token per skeleton word


class FixedRetriever:
    """Returns the passages it was built with: the context of one benchmark answer."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        return self.passages[:k]


class Vocabulary:
    """Token ids the benchmark lets the random model sample, and random-word text to build contexts from.

    Allowed: space-led whole words (" word"), ONE word without a space (a line's first word may need one),
    the numbering tokens "k. " and "\\nk. " that ``make_model_dir.py`` puts in the vocabulary, a bare newline,
    and end-of-turn. So a skeleton line is about "k. " + 8 words + newline, ~10 tokens, and no state of the
    skeleton regex is left without an allowed token. (Allowing digits or other word pieces lets the random
    model glue pieces onto a line's last word up to the regex's 24 characters: ~13-15 tokens a line.)
    """

    def __init__(self, tokenizer: Any, seed: int = 0) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        self.words = sorted(i for t, i in vocab.items() if WORD.match(tokenizer.convert_tokens_to_string([t])))
        first = sorted(i for t, i in vocab.items() if re.fullmatch(r"[a-z]{5,8}", t))[:1]
        numbering = [vocab[t] for t in ([f"{k}.Ġ" for k in range(1, 11)] + [f"Ċ{k}.Ġ" for k in range(2, 11)] + ["Ċ"])
                     if t in vocab]
        self.allowed = sorted({*self.words, *first, *numbering, tokenizer.eos_token_id})
        self.tokenizer = tokenizer
        self.rng = random.Random(seed)

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
            allowed_token_ids=vocab.allowed,
        ),
        sot=SoTConfig(min_points=points, max_points=points, fallback_min_points=2, eager=eager),
        top_k=top_k, context_share=0.9,
    )


async def answer(engine: Any, vocab: Vocabulary, question: str, mode: str, points: int, tpp: int,
                 context_tokens: int, **kw: Any) -> dict:
    """One answer through the pipeline; returns its stats and when each kind of event first arrived."""
    settings = settings_for(points, tpp, vocab, eager=EAGER, **kw)
    passages = vocab.passages(context_tokens)
    pipe = SoTPipeline(engine, settings, retriever=FixedRetriever(passages) if passages else None)
    firsts: dict[str, float] = {}
    result = None
    t0 = time.perf_counter()
    async for ev in pipe.stream(question, mode=mode):  # type: ignore[arg-type]
        now = time.perf_counter() - t0
        kind = type(ev).__name__
        firsts.setdefault(kind, now)
        if isinstance(ev, AnswerDone):
            result = ev.result
    wall = time.perf_counter() - t0
    assert result is not None
    st = result.stats
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
        "prompt_tokens": st.prompt_tokens.model_dump(), "cached_prompt_tokens": st.cached_prompt_tokens.model_dump(),
        "fallback_reason": result.fallback_reason, "route_reason": result.route_reason,
        "skeleton": result.skeleton[:400],
    }


def shape_ok(r: dict) -> bool:
    if r["mode"] == "normal":
        return r["tokens"] == r["points"] * r["tokens_per_point"]
    return r["num_points"] == r["points"] and all(t == r["tokens_per_point"] for t in r["point_tokens"])


async def pair(engine: Any, vocab: Vocabulary, question: str, points: int, tpp: int, ctx: int) -> dict:
    n = await answer(engine, vocab, question, "normal", points, tpp, ctx)
    s = await answer(engine, vocab, question, "sot", points, tpp, ctx)
    return {"normal": n, "sot": s, "speedup": n["wall_s"] / s["wall_s"], "shape_ok": shape_ok(n) and shape_ok(s)}


async def direct_same_shape(llm: Any, p: es.Prompts, n: dict, s: dict) -> dict:
    """The pipeline runs' exact lengths, driven straight through the same AsyncLLM on token ids."""
    if s["mode"] != "sot" or not s["point_prompt_tokens"]:
        raise RuntimeError(f"the SoT run fell back ({s['fallback_reason']}); skeleton: {s['skeleton']!r}")
    dn = await es.normal_exact(llm, p, n["prompt_tokens"]["normal"], n["tokens"])
    ds = await es.sot_exact(llm, p, s["prompt_tokens"]["skeleton"], s["skeleton_tokens"], s["point_prompt_tokens"],
                            s["tokens_per_point"])
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


async def load_test(engine: Any, vocab: Vocabulary, questions: list[str], mode: str, rate: float, arrivals: int,
                    points: int, tpp: int, ctx: int, seed: int, router: Any = None) -> dict:
    """Poisson arrivals at ``rate`` per second, ``arrivals`` answers; latency and output tokens/s."""
    rng = random.Random(seed)
    settings = settings_for(points, tpp, vocab, eager=EAGER)
    tasks = []

    async def one(q: str, passages: list[Passage]) -> dict:
        pipe = SoTPipeline(engine, settings, retriever=FixedRetriever(passages) if passages else None, router=router)
        t0 = time.perf_counter()
        first = None
        result = None
        async for ev in pipe.stream(q, mode=mode):  # type: ignore[arg-type]
            if first is None and isinstance(ev, (SkeletonDelta, PointDelta, AnswerDelta)):
                first = time.perf_counter() - t0
            if isinstance(ev, AnswerDone):
                result = ev.result
        assert result is not None
        return {"start": t0, "latency_s": time.perf_counter() - t0, "first_visible_s": first,
                "tokens": result.stats.tokens, "mode": result.mode, "route_reason": result.route_reason}

    t_start = time.perf_counter()
    for i in range(arrivals):
        passages = vocab.passages(ctx)
        tasks.append(asyncio.create_task(one(questions[i % len(questions)], passages)))
        await asyncio.sleep(rng.expovariate(rate))
    rows = await asyncio.gather(*tasks)
    t_end = time.perf_counter()
    lat = sorted(r["latency_s"] for r in rows)
    return {
        "mode": mode, "rate": rate, "arrivals": arrivals, "duration_s": t_end - t_start,
        "p50_s": statistics.median(lat), "p90_s": _pct(lat, 0.90), "p99_s": _pct(lat, 0.99),
        "mean_s": statistics.fmean(lat),
        "first_visible_p50_s": statistics.median(r["first_visible_s"] for r in rows if r["first_visible_s"]),
        "output_tokens_per_s": sum(r["tokens"] for r in rows) / (t_end - t_start),
        "sot_share": sum(r["mode"] == "sot" for r in rows) / len(rows),
        "latencies": [r["latency_s"] for r in rows],
        "route_reasons": [r["route_reason"] for r in rows],
    }


async def load_test_direct(llm: Any, mode: str, rate: float, arrivals: int, seed: int, *, skel_prompt: int = 2160,
                           skel_tokens: int = 73, point_prompt: int = 2420, points: int = 7, tpp: int = 80) -> dict:
    """Table 4's arrivals driven straight through the AsyncLLM on token ids (no chat template, no regex
    guidance, no parser): what the engine alone sustains for the pipeline's request shapes."""
    rng = random.Random(seed)
    p = es.Prompts(seed)

    async def one() -> dict:
        t0 = time.perf_counter()
        if mode == "sot":
            r = await es.sot_exact(llm, p, skel_prompt, skel_tokens, [point_prompt] * points, tpp)
            return {"latency_s": time.perf_counter() - t0, "tokens": skel_tokens + points * tpp,
                    "first_visible_s": r["ttft_skeleton_s"]}
        r = await es.normal_exact(llm, p, skel_prompt, points * tpp)
        return {"latency_s": time.perf_counter() - t0, "tokens": points * tpp, "first_visible_s": r["ttft_s"]}

    tasks = []
    t_start = time.perf_counter()
    for _ in range(arrivals):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(rng.expovariate(rate))
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


async def make_engine(a: argparse.Namespace, caching: bool):  # -> VLLMEngine
    from sotrag.app.engines.vllm import VLLMEngine

    extra: dict[str, Any] = {"seed": 0}
    if a.attention_backend:
        extra["attention_config"] = {"backend": a.attention_backend}
    if a.quantization:
        extra["quantization"] = a.quantization
    if a.kv_cache_dtype:
        extra["kv_cache_dtype"] = a.kv_cache_dtype
    cfg = EngineConfig(preset="gpu", model=a.model, dtype="bfloat16", load_format="dummy",
                       max_model_len=a.max_model_len, gpu_memory_utilization=a.gpu_mem, max_num_seqs=a.max_num_seqs,
                       enable_prefix_caching=caching, extra=extra)
    return await VLLMEngine.create(cfg)


def gpu_info() -> dict:
    import torch
    import vllm
    from vllm.platforms import current_platform

    try:
        name = current_platform.get_device_name(0)
    except Exception as e:
        name = f"none ({type(e).__name__})"
    return {"gpu": name, "vllm": vllm.__version__, "torch": torch.__version__}


class PrecomputedClassifier:
    """The trained question classifier's outputs, computed off the GPU machine (``router_probs.py``)."""

    def __init__(self, path: str) -> None:
        data = json.loads(Path(path).read_text())
        self.name, self.threshold = data["name"], float(data["threshold"])
        self.probs: dict[str, float] = data["probabilities"]

    def probability(self, question: str) -> float:
        return self.probs[question]


def load_router(spec: str | None) -> Any:
    """A JSON from ``router_probs.py``: the real ``SoTRouter`` + ``LoadPolicy`` (settings' defaults) over
    precomputed question probabilities; None: no router."""
    if not spec:
        return None
    from sotrag.app.routing.load_policy import LoadPolicy
    from sotrag.app.routing.router import SoTRouter

    cfg = Settings().router
    policy = LoadPolicy(max_busy_fraction=cfg.max_busy_fraction, max_kv_cache_usage=cfg.max_kv_cache_usage,
                        min_free_seqs=cfg.min_free_seqs)
    return SoTRouter(PrecomputedClassifier(spec), policy)


async def main_async(a: argparse.Namespace) -> None:
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
    engine = await make_engine(a, caching=True)
    res["engine_start_s"] = time.perf_counter() - t0
    vocab = Vocabulary(engine.tokenizer)
    v = len(engine.tokenizer)
    es.TOKEN_RANGE = (min(300, v // 4), min(30000, v))  # ordinary ids (the tiny CPU test model has ~600)
    res["allowed_token_ids"] = len(vocab.allowed)
    print(f"[{a.label}] engine up in {res['engine_start_s']:.1f}s; {len(vocab.allowed)} allowed ids", flush=True)
    llm = engine._llm  # the same AsyncLLM, for the engine-direct reference
    es.ALLOWED_TOKEN_IDS = vocab.allowed  # the direct runs sample like the pipeline's
    steps: dict[int, float] = {}
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
            runs = []
            p = es.Prompts(11)
            for i in range(a.reps):
                pr = await pair(engine, vocab, questions[i % len(questions)], 7, 80, 1500)
                pr["direct"] = await direct_same_shape(llm, p, pr["normal"], pr["sot"])
                runs.append(pr)
                d = pr["direct"]
                print(f"[{a.label}] headline rep {i}: pipeline normal {pr['normal']['wall_s']*1e3:.0f} sot "
                      f"{pr['sot']['wall_s']*1e3:.0f} (x{pr['speedup']:.2f}, skel {pr['sot']['skeleton_tokens']} tok"
                      f" {pr['sot']['skeleton_s']*1e3:.0f}ms) | direct normal {d['normal']['total_s']*1e3:.0f} sot "
                      f"{d['sot']['total_s']*1e3:.0f} | shape_ok={pr['shape_ok']}", flush=True)
            res["headline"] = summarize_headline(runs, steps)
            save()
        if "table1" in parts:
            res["table1"] = []
            for ctx in (0, 1500, 4000):
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
            router = load_router(a.router)
            modes = [m for m in a.load_modes.split(",") if m] + (["auto"] if router is not None else [])
            for rate in [float(r) for r in a.rates.split(",")]:
                for mode in modes:
                    r = await load_test(engine, vocab, questions, mode, rate, a.arrivals, 7, 80, 1500,
                                        seed=int(rate * 100), router=router)
                    res["table4"].append(r)
                    print(f"[{a.label}] t4 rate={rate:>5} {mode:>6}: p50 {r['p50_s']:.2f}s p99 {r['p99_s']:.2f}s "
                          f"first {r['first_visible_p50_s']:.2f}s {r['output_tokens_per_s']:.0f} tok/s "
                          f"sot_share={r['sot_share']:.2f}", flush=True)
                    save()
        if "table4direct" in parts:
            res["table4direct"] = []
            for rate in [float(r) for r in a.rates.split(",")]:
                for mode in a.load_modes.split(","):
                    r = await load_test_direct(llm, mode, rate, a.arrivals, seed=int(rate * 100))
                    res["table4direct"].append(r)
                    print(f"[{a.label}] t4direct rate={rate:>5} {mode:>6}: p50 {r['p50_s']:.2f}s p99 {r['p99_s']:.2f}s "
                          f"{r['output_tokens_per_s']:.0f} tok/s", flush=True)
                    save()
    finally:
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
    if all("direct" in r for r in runs):
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
    ap.add_argument("--parts", default="headline,table1,table2,table4,nocache")
    ap.add_argument("--questions", default=None, help="CSV with a 'request' column (Vicuna-80)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--table2-questions", type=int, default=80)
    ap.add_argument("--table2-tpp", type=int, default=80)
    ap.add_argument("--rates", default="1,2,4,8,16")
    ap.add_argument("--arrivals", type=int, default=32)
    ap.add_argument("--load-modes", default="normal,sot")
    ap.add_argument("--eager", action="store_true", help="SoTConfig.eager for every SoT answer")
    ap.add_argument("--router", default=None, help="router_probs.py JSON: adds mode=auto to table4")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-num-seqs", type=int, default=64)
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
