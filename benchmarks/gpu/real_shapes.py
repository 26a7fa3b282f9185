"""SoT vs normal decoding on REAL answer shapes, through sotrag's pipeline, on a GPU (issue 22).

The model has random weights (``load_format="dummy"``, the 7B shape of ``make_model_dir.py``), so on its own it
writes random text of a fixed shape. Here the engine is made to write the answers three real models wrote to
the Vicuna-80 questions (``tests/data/real_answers.jsonl``): the replay logits processor
(``sotrag.app.engines.replay``) masks every logit but the next recorded token. The engine still runs every
forward pass and samples every token; the pipeline is the one users run, with its defaults but these settings:

- ``skeleton_max_tokens=400``, ``point_max_tokens=512``, ``normal_max_tokens=2048``, ``max_points=20``: recorded
  points, answers and lists are not cut by a limit, so both modes write the recorded answer (the defaults,
  200 / 128 / 1024 / 10, cut some; the unguided skeleton's own bound, 20 points x (2 x 8 words + 4) = 400,
  still applies);
- the context: 1500 tokens of random words in 5 passages, fresh for every answer (no prefix shared across
  answers), the first passage starting with ``replay:<source model>``: the replay's tag for which model's
  answer to write (the three models answer the same questions).

What the replay processor changes in the engine (benchmark-only): vLLM keeps every request's output ids for
a custom logits processor (under async scheduling it fills in the in-flight token before sampling); the
processor decodes the end of each new request's prompt once and masks the logits every step. Its own CPU time
per step is measured (``stats_file``) and reported beside the results (``replay_cost``).

Parts (``--parts``): ``real`` (each recorded answer: normal, SoT, SoT eager, interleaved per question), ``fixed``
(the 7 x 80 x 1500 headline of ``pipeline_bench.py`` on the same engine: the replay passes those requests
through), ``perpoint`` (SoT vs SoT with per-point grounding on, the points' extra passages unshared: what it
costs the GPU), ``load`` (Poisson arrivals of the recorded questions at ``--rates``: normal, sot, sot-eager, auto;
a load mode with the suffix ``+inplace``, ``auto+inplace``, runs with the tokenize worker bypassed, so each answer's
passages are encoded on the event loop: the A/B of ``LocalTokenizer``'s worker under load, on one engine).

``--apart`` (real part): each answer also as ``sot-apart``, SoT with ``VLLMEngine.admit_together`` switched off
for that answer only, so its points reach vLLM one by one (the hand-over before ``generate_group``), in turns
with ``sot``: what holding the idle scheduler for the points changes, on one engine start.

Rows (``benchmarks/results/gpu_real_shapes.json``): one per machine start, question and mode (``sot``,
``sot-apart`` or ``sot-eager``): speed-up = normal's wall time / SoT's, bound = normal's decode steps /
(skeleton's + longest point's) for ``sot`` and ``sot-apart``, and for ``sot-eager`` normal's steps / max over
points of (skeleton tokens up to that point's line + that point's tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_bench as pb
import request_tap

from sotrag.app.config import EngineConfig, SamplingConfig, Settings, SoTConfig
from sotrag.app.engines.replay import replay_engine_extra
from sotrag.app.events import AnswerDone
from sotrag.app.pipeline import SoTPipeline
from sotrag.app.skeleton import SkeletonParser
from sotrag.retrieval.types import Passage

TAP: request_tap.RequestTap | None = None  # --trace: vLLM's per-request timestamps (a read-only pass-through)
CONTEXT_TOKENS = 1500
MAX_POINTS = 20
PER_POINT_K = 2  # the default of ``Settings.per_point_k``


def real_settings(eager: bool, per_point: bool = False) -> Settings:
    return Settings(
        sampling=SamplingConfig(skeleton_max_tokens=400, point_max_tokens=512, normal_max_tokens=2048),
        sot=SoTConfig(max_points=MAX_POINTS, eager=eager),
        passages_k=5,
        context_share=0.9,
        per_point_retrieval=per_point,
        per_point_k=PER_POINT_K,
    )


class PointPassages(pb.FixedRetriever):
    """The question's fixed passages for the question; for any other query (a point's own retrieval with
    per-point grounding on) passages of its own, drawn from a pool by the query, so that every point's prompt
    carries ``PER_POINT_K`` passages that no other prompt shares. Retrieval itself costs nothing here: this
    measures what the GPU pays for the points' longer, unshared prompts."""

    def __init__(self, passages: list[Passage], question: str, pool: list[Passage]) -> None:
        super().__init__(passages)
        self.question = question
        self.pool = pool

    async def aretrieve(self, query: str, k: int, filters: dict[str, str] | None = None) -> list[Passage]:
        if query == self.question:
            return self.passages[:k]
        start = int(hashlib.sha256(query.encode()).hexdigest(), 16) % len(self.pool)
        return [self.pool[(start + j) % len(self.pool)] for j in range(k)]


def point_pool(vocab: pb.Vocabulary, n: int = 64) -> list[Passage]:
    """Passages the size of the context's (``CONTEXT_TOKENS / 5`` tokens each), for per-point retrieval."""
    per = CONTEXT_TOKENS // 5
    return [
        Passage(text=vocab.text(per).strip(), source=f"extra{j}.md", heading="Section", score=1.0, chunk_id=f"x{j}")
        for j in range(n)
    ]


def tagged_passages(vocab: pb.Vocabulary, source_model: str) -> list[Passage]:
    passages = vocab.passages(CONTEXT_TOKENS)
    first = passages[0]
    passages[0] = Passage(
        text=f"replay:{source_model} {first.text}", source=first.source, heading=first.heading, score=first.score
    )
    return passages


async def one(
    engine: Any, row: dict, mode: str, vocab: pb.Vocabulary, router: Any = None, pool: list[Passage] | None = None
) -> dict:
    """One recorded answer through the pipeline: ``mode`` normal, sot, sot-eager or auto; with a ``pool``,
    per-point grounding on (each point's prompt gets passages of its own from it)."""
    eager = mode == "sot-eager"
    passages = tagged_passages(vocab, row["source_model"])
    pipe = SoTPipeline(
        engine,
        real_settings(eager, per_point=pool is not None),
        retriever=pb.FixedRetriever(passages) if pool is None else PointPassages(passages, row["question"], pool),
        router=router,
    )
    t0 = time.perf_counter()
    result = None
    async for ev in pipe.stream(row["question"], mode="sot" if eager else mode):
        if isinstance(ev, AnswerDone):
            result = ev.result
    wall = time.perf_counter() - t0
    assert result is not None
    st = result.stats
    traced = (
        {"trace": request_tap.split(TAP.between(t0, t0 + wall), lambda rid: "skeleton" in rid)}
        if TAP is not None and mode != "normal"
        else {}
    )
    return {
        **traced,
        "wall_s": wall,
        "mode": result.mode,
        "tokens": st.tokens,
        "skeleton_tokens": st.skeleton_tokens,
        "point_tokens": [p.tokens for p in result.points],
        "titles": [p.title for p in result.points],
        "finish": [p.finish_reason for p in result.points],
        "fallback": result.fallback_reason,
        "retry": result.skeleton_retry_reason,
        "skeleton": result.skeleton,
        "normal_finish": None if result.points else "normal",
        "ttft_s": st.ttft_s,
        "skeleton_s": st.skeleton_s,
        "expansion_s": st.expansion_s,
        "prompt_tokens": st.prompt_tokens.model_dump(),
        "cached_prompt_tokens": st.cached_prompt_tokens.model_dump(),
        "point_uncached_prompt_tokens": st.point_uncached_prompt_tokens,
        "sources": len(result.sources),
    }


def line_ends(tokenizer: Any, skeleton: str) -> list[int]:
    """Skeleton tokens written when each point's line is complete (when eager expansion starts it), read by the
    pipeline's own parser fed token by token."""
    ids = tokenizer.encode(skeleton, add_special_tokens=False)
    parser = SkeletonParser(max_points=MAX_POINTS)
    ends: list[int] = []
    prev = ""
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:k])
        for _ in parser.feed(text[len(prev) :]):
            ends.append(k)
        prev = text
    for _ in parser.finish():
        ends.append(len(ids))
    return ends


async def one_apart(engine: Any, row: dict, vocab: pb.Vocabulary) -> dict:
    """SoT with the points handed to vLLM one by one (``VLLMEngine.admit_together`` off for this answer only):
    the hand-over users had before ``generate_group`` held an idle scheduler."""
    before = engine.admit_together
    engine.admit_together = False
    try:
        return await one(engine, row, "sot", vocab)
    finally:
        engine.admit_together = before


def q_rows(machine: str, info: dict, row: dict, n: dict, runs: dict[str, dict], tokenizer: Any) -> list[dict]:
    base = {
        "gpu": info["gpu"],
        "host_cpu": info["host"]["cpu_model"],
        "machine": machine,
        "source_model": row["source_model"],
        "question_id": row["question_id"],
        "normal_tokens": n["tokens"],
        "normal_s": n["wall_s"],
        "recorded_points": len(row["points"]),
        "normal_ttft_s": n["ttft_s"],
    }
    out = []
    ends = line_ends(tokenizer, row["skeleton"])
    for mode, r in runs.items():
        pts = r["point_tokens"]
        longest = max(pts) if pts else 0
        if mode != "sot-eager":
            bound = n["tokens"] / (r["skeleton_tokens"] + longest) if pts else None
        else:
            path = [ends[i] + t for i, t in enumerate(pts) if i < len(ends)]
            bound = n["tokens"] / max(path) if path else None
        out.append(
            {
                **base,
                "mode": mode,
                "points": len(pts),
                "skeleton_tokens": r["skeleton_tokens"],
                "longest_point_tokens": longest,
                "sot_s": r["wall_s"],
                "speedup": n["wall_s"] / r["wall_s"],
                "bound": bound,
                "ratio": (n["wall_s"] / r["wall_s"]) / bound if bound else None,
                "fallback": r["fallback"],
                "retry": r["retry"],
                "answer_mode": r["mode"],
                "point_tokens": pts,
                "point_finish": r["finish"],
                "sot_ttft_s": r["ttft_s"],
                "skeleton_s": r["skeleton_s"],
                "expansion_s": r["expansion_s"],
                "point_uncached_prompt_tokens": r["point_uncached_prompt_tokens"],
                **({"trace": r["trace"]} if "trace" in r else {}),
            }
        )
    return out


def hand_over(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per mode, medians over answers of where the points' time went (ms, from vLLM's per-request timestamps):
    the skeleton's last output to the first point's call, the calls' spread, call to queued in the core, the
    spread of the points' first scheduling, the first to the last point's first token, and the last point's
    first token to its last output."""
    out: dict[str, dict[str, float]] = {}
    for mode in ("sot", "sot-apart", "sot-eager"):
        traces = [r["trace"] for r in rows if r.get("trace") and r["mode"] == mode and r["trace"].get("skeleton")]
        traces = [t for t in traces if "points_first_token_ts_max" in t]
        if not traces:
            continue

        def med(f: Any, traces: list[dict] = traces) -> float:
            return round(statistics.median([f(t) for t in traces]), 2)

        out[mode] = {
            "n": len(traces),
            "skeleton_last_to_first_call": med(lambda t: t["points_call_min"] - t["skeleton"]["last_recv"]),
            "calls_spread": med(lambda t: t["points_call_max"] - t["points_call_min"]),
            "first_call_to_last_queued": med(lambda t: t["points_queued_ts_max"] - t["points_call_min"]),
            "scheduled_spread": med(lambda t: t["points_scheduled_ts_max"] - t["points_scheduled_ts_min"]),
            "first_call_to_last_first_token": med(lambda t: t["points_first_token_ts_max"] - t["points_call_min"]),
            "first_token_spread": med(lambda t: t["points_first_token_ts_max"] - t["points_first_token_ts_min"]),
            "last_first_token_to_last_recv": med(lambda t: t["points_last_recv_max"] - t["points_first_token_ts_max"]),
        }
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["source_model"], r["mode"]) for r in rows}) + sorted({("all", r["mode"]) for r in rows})
    for model, mode in keys:
        sel = [
            r
            for r in rows
            if r["mode"] == mode
            and (model == "all" or r["source_model"] == model)
            and r["bound"]
            and r["source_model"] != "fixed-7x80"
        ]
        if not sel:
            continue
        sp = [r["speedup"] for r in sel]
        bd = [r["bound"] for r in sel]
        out.append(
            {
                "source_model": model,
                "mode": mode,
                "n": len(sel),
                "speedup_p10": pct(sp, 0.1),
                "speedup_median": statistics.median(sp),
                "speedup_p90": pct(sp, 0.9),
                "bound_p10": pct(bd, 0.1),
                "bound_median": statistics.median(bd),
                "bound_p90": pct(bd, 0.9),
                "median_ratio": statistics.median(sp) / statistics.median(bd),
                "p10_ratio": pct(sp, 0.1) / pct(bd, 0.1),
            }
        )
    return out


def print_summary(summary: list[dict], label: str) -> None:
    print(
        f"[{label}] {'model':<16} {'mode':<9} {'n':>3}  speed-up p10/med/p90   bound p10/med/p90   "
        "med ratio  p10 ratio",
        flush=True,
    )
    for s in summary:
        print(
            f"[{label}] {s['source_model']:<16} {s['mode']:<9} {s['n']:>3}  {s['speedup_p10']:.2f}/"
            f"{s['speedup_median']:.2f}/{s['speedup_p90']:.2f}x      {s['bound_p10']:.2f}/{s['bound_median']:.2f}/"
            f"{s['bound_p90']:.2f}x    {s['median_ratio']:.3f}      {s['p10_ratio']:.3f}",
            flush=True,
        )


INPLACE = "+inplace"  # a load mode's suffix: the same mode with every prompt encoded on the event loop


async def load_real(
    engine: Any,
    rows: list[dict],
    mode: str,
    rate: float,
    arrivals: int,
    seed: int,
    router: Any = None,
    same_contexts: bool = False,
) -> dict:
    """Poisson arrivals of recorded questions (the same sequence for every mode of a rate, each mode with passages
    of its own: see ``pipeline_bench.context_seed``). A mode ending in
    ``+inplace`` runs with the engine's tokenize worker bypassed (``LocalTokenizer.off_loop_chars`` above any
    content's length): an answer's passages are then encoded on the event loop, as before the worker.
    ``same_contexts``: every mode of a rate gets the same passages, as before ``context_seed`` (only to show that
    ``first_request_cached_tokens_median`` exposes it)."""
    local = engine._chat
    saved = local.off_loop_chars
    if mode.endswith(INPLACE):
        local.off_loop_chars = 1 << 40
    try:
        context_mode = "shared" if same_contexts else mode
        return await _load_real(engine, rows, mode, rate, arrivals, seed, router, context_mode)
    finally:
        local.off_loop_chars = saved


async def _load_real(
    engine: Any, rows: list[dict], mode: str, rate: float, arrivals: int, seed: int, router: Any, context_mode: str
) -> dict:
    gaps = pb.arrival_gaps(rate, arrivals, seed)
    rng = random.Random(f"{seed}-{rate}-q")
    picks = [rows[rng.randrange(len(rows))] for _ in range(arrivals)]
    vocab = pb.Vocabulary(engine.tokenizer, seed=pb.context_seed(seed, rate, context_mode))
    due = list(itertools.accumulate([0.0, *gaps]))
    tasks = []
    t_start = time.perf_counter()
    for i, row in enumerate(picks):
        await asyncio.sleep(max(0.0, t_start + due[i] - time.perf_counter()))
        tasks.append(asyncio.create_task(one(engine, row, mode.removesuffix(INPLACE), vocab, router)))
    res = await asyncio.gather(*tasks)
    t_end = time.perf_counter()
    lat = sorted(r["wall_s"] for r in res)
    # an answer's first request (skeleton or normal) found this many prompt tokens in the prefix cache: the
    # shared system instruction only, unless a set's contexts were prefilled before it (context_seed)
    first_cached = [r["cached_prompt_tokens"]["skeleton"] or r["cached_prompt_tokens"]["normal"] for r in res]
    return {
        "mode": mode,
        "first_request_cached_tokens_median": statistics.median(first_cached),
        "rate": rate,
        "arrivals": arrivals,
        "duration_s": t_end - t_start,
        "p50_s": statistics.median(lat),
        "p90_s": pb._pct(lat, 0.9),
        "p99_s": pb._pct(lat, 0.99),
        "output_tokens_per_s": sum(r["tokens"] for r in res) / (t_end - t_start),
        "sot_share": sum(r["mode"] == "sot" for r in res) / len(res),
        "latencies": lat,
    }


async def profile_start(engine: Any, rows: list[dict], vocab: pb.Vocabulary, label: str, out: Path) -> dict:
    """Where an answer's time goes before its first request reaches vLLM (part ``profile``): stages of the
    pipeline's start are timed (``SoTPipeline.validate``, ``Grounding.retrieve`` with the passages' fit,
    ``EngineCalls.chat_request``, ``VLLMEngine._submit``) over normal and SoT answers; then the same answers run
    under cProfile (this process: the pipeline and vLLM's frontend, not its engine core), whose top functions go
    to ``<out>.profile.txt``. The timers and the profiler change nothing but add their own cost."""
    import cProfile
    import io
    import pstats

    from sotrag.app.engine_calls import EngineCalls
    from sotrag.app.passages import Grounding

    spans: dict[str, list[float]] = {}

    def timer(inner: Any, name: str) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                spans.setdefault(name, []).append((time.perf_counter() - t) * 1e3)

        return timed

    originals = {
        (SoTPipeline, "validate"): SoTPipeline.__dict__["validate"],
        (EngineCalls, "chat_request"): EngineCalls.__dict__["chat_request"],
        (Grounding, "retrieve"): Grounding.__dict__["retrieve"],
    }
    SoTPipeline.validate = timer(SoTPipeline.validate, "validate")  # type: ignore[method-assign]
    EngineCalls.chat_request = timer(EngineCalls.chat_request, "chat_request")  # type: ignore[method-assign]
    Grounding.retrieve = classmethod(timer(originals[(Grounding, "retrieve")].__func__, "retrieve+fit"))  # type: ignore[assignment,method-assign]
    engine._submit = timer(engine._submit, "submit (add_request)")
    starts: list[float] = []
    try:
        for row in rows:
            for mode in ("normal", "sot"):
                r = await one(engine, row, mode, vocab)
                skeleton = r.get("trace", {}).get("skeleton")
                if skeleton:
                    starts.append(skeleton["call"])
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        del engine._submit
    medians = {k: round(statistics.median(v), 3) for k, v in spans.items()}
    if starts:
        medians["answer start -> skeleton add_request (traced)"] = round(statistics.median(starts), 3)
    print(f"[{label}] start of an answer, median ms per call: {medians}", flush=True)
    prof = cProfile.Profile()
    prof.enable()
    for row in rows:
        for mode in ("normal", "sot"):
            await one(engine, row, mode, vocab)
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    out.with_suffix(".profile.txt").write_text(text.getvalue())
    return {"medians_ms": medians, "answers": len(rows), "calls": {k: len(v) for k, v in spans.items()}}


async def main_async(a: argparse.Namespace) -> None:
    from sotrag.app.engines.vllm import VLLMEngine
    from sotrag.app.serving.service import freeze_startup_heap

    rows = [json.loads(x) for x in Path(a.corpus).read_text().splitlines() if x.strip()]
    rows = [r for r in rows if len(r["points"]) >= 3][: a.limit or None]
    script = Path(a.workdir) / "replay_script.jsonl"
    script.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats_file = str(Path(a.workdir) / "replay_stats.json")
    info = pb.gpu_info()
    info["corpus_sha256"] = hashlib.sha256(Path(a.corpus).read_bytes()).hexdigest()
    res: dict[str, Any] = {"label": a.machine, "args": vars(a), **info, "rows": [], "notes": __doc__.split("\n\n")[0]}
    out = Path(a.out)

    def save() -> None:
        out.write_text(json.dumps(res, indent=1, default=str))

    extra: dict[str, Any] = {"seed": 0}
    if a.replay:
        extra.update(replay_engine_extra(script, unmatched="pass", stats_file=stats_file, model=a.model))
    if a.cpu_smoke:  # the tiny test model on this CPU: checks the script, measures nothing
        cfg = EngineConfig(model=a.model, max_model_len=4096, enforce_eager=True, kv_cache_gib=0.5, extra=extra)
    else:
        extra["attention_config"] = {"backend": "FLASH_ATTN"}
        cfg = EngineConfig(
            preset="gpu",
            model=a.model,
            dtype="bfloat16",
            load_format="dummy",
            max_model_len=8192,
            gpu_memory_utilization=0.85,
            enable_prefix_caching=True,
            extra=extra,
        )
    t0 = time.perf_counter()
    engine = await VLLMEngine.create(cfg)
    if a.trace:
        global TAP
        TAP = request_tap.RequestTap(engine._llm)
    freeze_startup_heap()
    res["engine_start_s"] = time.perf_counter() - t0
    tok = engine.tokenizer
    words = sum(len(r["normal"].split()) for r in rows)
    res["tokens_per_word"] = {
        m: sum(len(tok.encode(r["normal"], add_special_tokens=False)) for r in rows if r["source_model"] == m)
        / sum(len(r["normal"].split()) for r in rows if r["source_model"] == m)
        for m in sorted({r["source_model"] for r in rows})
    }
    res["tokens_per_word"]["all"] = sum(len(tok.encode(r["normal"], add_special_tokens=False)) for r in rows) / words
    print(
        f"[{a.machine}] engine up in {res['engine_start_s']:.1f}s on {info['gpu']} / {info['host']['cpu_model']};"
        f" tokens/word {res['tokens_per_word']}",
        flush=True,
    )
    vocab = pb.Vocabulary(tok)
    pb.es.TOKEN_RANGE = (min(300, len(tok) // 4), min(30000, len(tok)))
    pb.es.ALLOWED_TOKEN_IDS = vocab.allowed

    def replay_stats() -> dict:
        try:
            return json.loads(Path(stats_file).read_text())
        except (OSError, ValueError):
            return {}

    try:
        # warm-up: the fixed shape (CUDA graphs at several batch sizes) and two recorded answers
        for n in (3, 7, 10):
            await pb.pair(engine, vocab, pb.DEFAULT_QUESTION, n, 16, 200)
        if a.replay:
            for row in rows[:2]:
                for mode in ("normal", "sot", "sot-eager"):
                    await one(engine, row, mode, vocab)
        res["steps"] = await pb.es.decode_steps(engine._llm, [1, 8, 16], context_tokens=1500, n_tokens=48)
        print(f"[{a.machine}] steps " + " ".join(f"B{r['batch']}={r['step_ms']:.2f}" for r in res["steps"]), flush=True)
        parts = a.parts.split(",")
        if "fixed" in parts:
            fixed = []
            for i in range(a.fixed_reps):
                pr = await pb.pair(engine, vocab, pb.DEFAULT_QUESTION, 7, 80, 1500)
                pr["sot_eager"] = await pb.answer(engine, vocab, pb.DEFAULT_QUESTION, "sot", 7, 80, 1500, eager=True)
                fixed.append(pr)
                n, s, e = pr["normal"], pr["sot"], pr["sot_eager"]
                for mode, r in (("sot", s), ("sot-eager", e)):
                    skel, pts = r["skeleton_tokens"], r["point_tokens"]
                    res["rows"].append(
                        {
                            "gpu": info["gpu"],
                            "host_cpu": info["host"]["cpu_model"],
                            "machine": a.machine,
                            "source_model": "fixed-7x80",
                            "question_id": i,
                            "mode": mode,
                            "points": len(pts),
                            "skeleton_tokens": skel,
                            "longest_point_tokens": max(pts) if pts else 0,
                            "normal_tokens": n["tokens"],
                            "normal_s": n["wall_s"],
                            "sot_s": r["wall_s"],
                            "speedup": n["wall_s"] / r["wall_s"],
                            "bound": n["tokens"] / (skel + max(pts)) if pts and mode == "sot" else None,
                            "shape_ok": pb.shape_ok(n) and pb.shape_ok(r),
                        }
                    )
                print(
                    f"[{a.machine}] fixed 7x80 rep {i}: normal {n['wall_s'] * 1e3:.0f} ms, sot {s['wall_s'] * 1e3:.0f} "
                    f"(x{n['wall_s'] / s['wall_s']:.2f}), eager {e['wall_s'] * 1e3:.0f} "
                    f"(x{n['wall_s'] / e['wall_s']:.2f})",
                    flush=True,
                )
                save()
        if "profile" in parts and a.replay:
            res["profile"] = await profile_start(engine, rows[: a.limit or 10], vocab, a.machine, Path(a.out))
            save()
        if "real" in parts and a.replay:
            before = replay_stats()
            t_real = time.perf_counter()
            for i, row in enumerate(rows):
                nr = await one(engine, row, "normal", vocab)
                runs: dict[str, dict] = {}
                if a.apart and i % 2:  # the two hand-overs in turns, so that neither always runs first
                    runs["sot-apart"] = await one_apart(engine, row, vocab)
                runs["sot"] = await one(engine, row, "sot", vocab)
                if a.apart and not i % 2:
                    runs["sot-apart"] = await one_apart(engine, row, vocab)
                runs["sot-eager"] = await one(engine, row, "sot-eager", vocab)
                qr = {q["mode"]: q for q in q_rows(a.machine, info, row, nr, runs, tok)}
                res["rows"].extend(qr.values())
                sr, er, sq, eq = runs["sot"], runs["sot-eager"], qr["sot"], qr["sot-eager"]
                apart = f" | apart x{qr['sot-apart']['speedup']:.2f}" if "sot-apart" in qr else ""
                print(
                    f"[{a.machine}] {row['source_model']:<14} q{row['question_id']:>2}: {len(row['points']):>2} pts, "
                    f"normal {nr['tokens']:>4} tok {nr['wall_s'] * 1e3:5.0f} ms | sot skel {sr['skeleton_tokens']:>3} "
                    f"longest {sq['longest_point_tokens']:>3} {sr['wall_s'] * 1e3:5.0f} ms x{sq['speedup']:.2f} "
                    f"(bound x{sq['bound'] or 0:.2f}){apart} | eager {er['wall_s'] * 1e3:5.0f} ms x{eq['speedup']:.2f} "
                    f"(bound x{eq['bound'] or 0:.2f}){' FALLBACK' if sr['fallback'] else ''}",
                    flush=True,
                )
                save()
            await asyncio.sleep(0.5)
            after = replay_stats()
            res["real_s"] = time.perf_counter() - t_real
            if before and after and after["steps"] > before.get("steps", 0):
                d = {k: after[k] - before.get(k, 0) for k in ("steps", "rows", "apply_s", "update_s", "added")}
                step_ms = res["steps"][0]["step_ms"]
                per_step_ms = (d["apply_s"] + d["update_s"]) / d["steps"] * 1e3
                res["replay_cost"] = {
                    **d,
                    "per_step_ms": per_step_ms,
                    "apply_ms_per_step": d["apply_s"] / d["steps"] * 1e3,
                    "update_ms_per_request": d["update_s"] / max(1, d["added"]) * 1e3,
                    "batch1_step_ms": step_ms,
                    "share_of_batch1_step": per_step_ms / step_ms,
                }
                print(
                    f"[{a.machine}] replay cost: {per_step_ms:.4f} ms per step ({100 * per_step_ms / step_ms:.2f}% of "
                    f"the batch-1 step {step_ms:.2f} ms); update {res['replay_cost']['update_ms_per_request']:.3f} ms "
                    f"per request",
                    flush=True,
                )
            res["summary"] = summarize(res["rows"])
            print_summary(res["summary"], a.machine)
            if a.trace:
                res["hand_over"] = hand_over(res["rows"])
                print(f"[{a.machine}] hand-over (median ms): {res['hand_over']}", flush=True)
            save()
        if "perpoint" in parts and a.replay:
            res["per_point"] = []
            pool = point_pool(vocab)
            for row in rows:
                sr = await one(engine, row, "sot", vocab)
                pr = await one(engine, row, "sot", vocab, pool=pool)
                res["per_point"].append(
                    {
                        "source_model": row["source_model"],
                        "question_id": row["question_id"],
                        "points": len(sr["point_tokens"]),
                        "pp_points": len(pr["point_tokens"]),
                        "sot_s": sr["wall_s"],
                        "per_point_s": pr["wall_s"],
                        "sot_expansion_s": sr["expansion_s"],
                        "per_point_expansion_s": pr["expansion_s"],
                        "sources": sr["sources"],
                        "per_point_sources": pr["sources"],
                        "point_uncached_prompt_tokens": sr["point_uncached_prompt_tokens"],
                        "per_point_uncached_prompt_tokens": pr["point_uncached_prompt_tokens"],
                    }
                )
                save()
            pp: list[dict[str, Any]] = res["per_point"]
            ratio = [x["per_point_s"] / x["sot_s"] for x in pp]
            added = [
                statistics.mean(x["per_point_uncached_prompt_tokens"] or [0])
                - statistics.mean(x["point_uncached_prompt_tokens"] or [0])
                for x in pp
            ]
            res["per_point_summary"] = {
                "n": len(pp),
                "sot_s_median": statistics.median([x["sot_s"] for x in pp]),
                "per_point_s_median": statistics.median([x["per_point_s"] for x in pp]),
                "time_ratio_median": statistics.median(ratio),
                "time_ratio_p90": pct(ratio, 0.9),
                "extra_uncached_prompt_tokens_per_point_median": statistics.median(added),
            }
            print(f"[{a.machine}] per-point grounding: {res['per_point_summary']}", flush=True)
            save()
        if "load" in parts and a.replay:
            res["load"] = []
            res["load_contexts"] = "shared" if a.same_contexts else "per mode"  # see pipeline_bench.context_seed
            router = pb.load_router(a.router) if a.router else None
            modes = [m for m in a.load_modes.split(",") if m and (m.removesuffix(INPLACE) != "auto" or router)]
            for rate in [float(r) for r in a.rates.split(",")]:
                for mode in modes:
                    r = await load_real(
                        engine,
                        rows,
                        mode,
                        rate,
                        a.arrivals,
                        a.seed,
                        router=pb.load_router(a.router) if mode.removesuffix(INPLACE) == "auto" else None,
                        same_contexts=a.same_contexts,
                    )
                    res["load"].append(r)
                    save()
                    print(
                        f"[{a.machine}] load rate={rate:>4} {mode:>9}: p50 {r['p50_s']:.2f}s p90 {r['p90_s']:.2f}s "
                        f"{r['output_tokens_per_s']:.0f} tok/s sot_share={r['sot_share']:.2f} first request cached "
                        f"{r['first_request_cached_tokens_median']:.0f} tokens (median)",
                        flush=True,
                    )
    finally:
        save()
        await engine.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True, help="real_answers.jsonl")
    ap.add_argument("--machine", required=True, help="label of this machine start")
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="fixed,real")
    ap.add_argument("--fixed-reps", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="first N recorded answers only (smoke runs)")
    ap.add_argument(
        "--no-replay",
        dest="replay",
        action="store_false",
        help="an engine without the replay processor (fixed shape only: what loading the processor changes)",
    )
    ap.add_argument("--rates", default="1,4,32")
    ap.add_argument("--arrivals", type=int, default=24)
    ap.add_argument("--load-modes", default="normal,sot,sot-eager,auto")
    ap.add_argument(
        "--same-contexts",
        action="store_true",
        help="load: every mode of a rate gets the same passages (the old, biased design), to check that "
        "first_request_cached_tokens_median shows the modes after the first finding them cached",
    )
    ap.add_argument("--router", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="record vLLM's per-request timestamps of the SoT answers (request_tap.RequestTap rebinds "
        "AsyncLLM.add_request to a pass-through that leaves its outputs unchanged)",
    )
    ap.add_argument(
        "--apart",
        action="store_true",
        help="also run each answer as sot-apart: SoT with VLLMEngine.admit_together off for that answer (its "
        "points reach vLLM one by one, as before generate_group), in turns with sot",
    )
    ap.add_argument("--cpu-smoke", action="store_true", help="the tiny test model on a CPU (tests/tiny_model.py)")
    ap.add_argument("--workdir", default="/tmp", help="where the replay script and its stats file go")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
