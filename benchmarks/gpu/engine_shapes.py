"""SoT and normal decoding driven straight through vLLM's ``AsyncLLM``, on token ids: the engine's floor.

This module is the reference the pipeline benchmark compares against, and the source of the engine-only
tables (decode step cost by batch size, prefix caching on vs off). It uses no sotrag code on purpose: the
difference between these numbers and the pipeline's is the pipeline's overhead.

The request layout mirrors ``sotrag.prompts.build`` token for token in structure (not in text): every request
of a question starts with the same ``system + context + question`` tokens; a point request is the skeleton
request, the skeleton the model wrote, a short point instruction and the point's prefill. "Prefix caching
off" gives every request its own ``cache_salt`` (vLLM hashes the salt into the first block), so no request
reuses another's KV blocks while the engine, its CUDA graphs and its memory stay the same.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# Token counts of the fixed parts of the prompts, measured on the chat-templated sotrag prompts with the
# benchmark tokenizer (system text, ChatML headers, instructions); they only need to be about right.
SYSTEM_TOKENS = 20
QUESTION_TOKENS = 20
SKELETON_INSTRUCTION_TOKENS = 50
POINT_INSTRUCTION_TOKENS = 40
POINT_PREFILL_TOKENS = 8
# Ordinary (non-special) token ids the random prompts draw from.
TOKEN_RANGE = (300, 30000)
# Sampling of every request: temperature 1 (as the pipeline benchmark samples; see pipeline_bench.py) and,
# when set, the same allowed ids the pipeline benchmark passes.
TEMPERATURE = 1.0
ALLOWED_TOKEN_IDS: list[int] | None = None

_counter = itertools.count()


def sampling(n_tokens: int, *, detokenize: bool = False):  # -> SamplingParams
    """Exactly ``n_tokens`` output tokens, streamed as deltas."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        max_tokens=n_tokens,
        min_tokens=n_tokens,
        ignore_eos=True,
        temperature=TEMPERATURE,
        allowed_token_ids=ALLOWED_TOKEN_IDS,
        detokenize=detokenize,
        output_kind=RequestOutputKind.DELTA,
    )


@dataclass
class Timed:
    """One request's stream: when it was sent, when each delta arrived, and what came back."""

    sent: float
    first: float = 0.0
    last: float = 0.0
    n_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    cached_prompt_tokens: int = 0
    prompt_tokens: int = 0

    @property
    def step_s(self) -> float:
        """Mean time per decode step after the first token (the first token includes the prefill)."""
        return (self.last - self.first) / max(1, self.n_tokens - 1)


async def timed_request(engine: Any, prompt_ids: list[int], n_tokens: int, *, salt: str | None = None,
                        detokenize: bool = False) -> Timed:
    prompt: dict[str, Any] = {"prompt_token_ids": list(prompt_ids)}
    if salt is not None:
        prompt["cache_salt"] = salt
    t = Timed(sent=time.perf_counter(), prompt_tokens=len(prompt_ids))
    rid = f"bench-{next(_counter)}-{uuid.uuid4().hex[:8]}"
    async for out in engine.generate(prompt, sampling(n_tokens, detokenize=detokenize), rid):
        now = time.perf_counter()
        new = out.outputs[0].token_ids
        if new and t.n_tokens == 0:
            t.first = now
        if new:
            t.last = now
        t.n_tokens += len(new)
        t.token_ids.extend(new)
        t.cached_prompt_tokens = out.num_cached_tokens or 0
    return t


class Prompts:
    """Fresh random token ids, so that no two questions share a cached prefix unless a test wants it."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def ids(self, n: int) -> list[int]:
        return [self.rng.randrange(*TOKEN_RANGE) for _ in range(n)]

    def question_prefix(self, context_tokens: int) -> list[int]:
        """System text + retrieved context + question: what every request of one question starts with."""
        return self.ids(SYSTEM_TOKENS + context_tokens + QUESTION_TOKENS)


async def decode_steps(engine: Any, batch_sizes: list[int], context_tokens: int = 1500, n_tokens: int = 64,
                       seed: int = 1) -> list[dict]:
    """Decode step time by batch size at a given context: prompts are prefilled into the prefix cache first,
    so the timed run is (one step of B last-token recomputes, then) pure batch-B decode steps."""
    p = Prompts(seed)
    rows = []
    for b in batch_sizes:
        prompts = [p.ids(context_tokens) for _ in range(b)]
        await asyncio.gather(*(timed_request(engine, ids, 1) for ids in prompts))  # warm the prefix cache
        res = await asyncio.gather(*(timed_request(engine, ids, n_tokens) for ids in prompts))
        steps = sorted(r.step_s for r in res)
        wall = max(r.last for r in res) - min(r.sent for r in res)
        rows.append({
            "batch": b, "context_tokens": context_tokens, "n_tokens": n_tokens,
            "step_ms": 1e3 * statistics.median(steps), "step_ms_min": 1e3 * steps[0], "step_ms_max": 1e3 * steps[-1],
            "tokens_per_s": b * n_tokens / wall,
            "cached_prompt_tokens": statistics.median(r.cached_prompt_tokens for r in res),
        })
    return rows


async def normal_once(engine: Any, p: Prompts, context_tokens: int, n_tokens: int, *, caching: bool = True) -> dict:
    prefix = p.question_prefix(context_tokens)
    t0 = time.perf_counter()
    r = await timed_request(engine, prefix + p.ids(5), n_tokens, salt=None if caching else uuid.uuid4().hex)
    return {
        "total_s": r.last - t0, "ttft_s": r.first - t0, "tokens": r.n_tokens,
        "step_ms": 1e3 * r.step_s, "prompt_tokens": r.prompt_tokens,
    }


async def sot_once(engine: Any, p: Prompts, context_tokens: int, points: int, tokens_per_point: int,
                   skeleton_tokens: int, *, caching: bool = True) -> dict:
    """Skeleton request, then all points at once; each point request extends the skeleton request."""
    salt = (lambda: None) if caching else (lambda: uuid.uuid4().hex)
    prefix = p.question_prefix(context_tokens)
    skel_prompt = prefix + p.ids(SKELETON_INSTRUCTION_TOKENS)
    t0 = time.perf_counter()
    sk = await timed_request(engine, skel_prompt, skeleton_tokens, salt=salt())
    t_skel = sk.last
    point_prompts = [
        skel_prompt + sk.token_ids + p.ids(POINT_INSTRUCTION_TOKENS + POINT_PREFILL_TOKENS) for _ in range(points)
    ]
    pts = await asyncio.gather(*(timed_request(engine, ids, tokens_per_point, salt=salt()) for ids in point_prompts))
    t_end = max(r.last for r in pts)
    return {
        "total_s": t_end - t0,
        "skeleton_s": t_skel - t0,
        "expansion_s": t_end - t_skel,
        "ttft_skeleton_s": sk.first - t0,
        "ttft_answer_s": min(r.first for r in pts) - t0,
        "first_point_token_s": pts[0].first - t0,
        "skeleton_step_ms": 1e3 * sk.step_s,
        "point_step_ms": 1e3 * statistics.median(r.step_s for r in pts),
        "point_prompt_tokens": statistics.median(r.prompt_tokens for r in pts),
        "point_cached_prompt_tokens": statistics.median(r.cached_prompt_tokens for r in pts),
        "skeleton_tokens": sk.n_tokens,
        "point_tokens": [r.n_tokens for r in pts],
    }


def ideal_speedup(normal_tokens: int, skeleton_tokens: int, tokens_per_point: int, step1_ms: float,
                  stepn_ms: float) -> float:
    """Decode steps only: normal length at batch-1 step cost over skeleton (batch 1) + longest point (batch N)."""
    return normal_tokens * step1_ms / (skeleton_tokens * step1_ms + tokens_per_point * stepn_ms)


async def compare(engine: Any, *, points: int, tokens_per_point: int, context_tokens: int, skeleton_tokens: int,
                  caching: bool = True, reps: int = 1, seed: int = 7) -> dict:
    """SoT vs normal at one shape, same engine, alternating, fresh context every request."""
    p = Prompts(seed)
    normal_tokens = points * tokens_per_point
    runs = []
    for _ in range(reps):
        n = await normal_once(engine, p, context_tokens, normal_tokens, caching=caching)
        s = await sot_once(engine, p, context_tokens, points, tokens_per_point, skeleton_tokens, caching=caching)
        runs.append({"normal": n, "sot": s})
    normal_s = statistics.median(r["normal"]["total_s"] for r in runs)
    sot_s = statistics.median(r["sot"]["total_s"] for r in runs)
    step1 = statistics.median(r["normal"]["step_ms"] for r in runs)
    stepn = statistics.median(r["sot"]["point_step_ms"] for r in runs)
    return {
        "points": points, "tokens_per_point": tokens_per_point, "context_tokens": context_tokens,
        "skeleton_tokens": skeleton_tokens, "prefix_caching": caching, "reps": reps,
        "normal_s": normal_s, "sot_s": sot_s, "speedup": normal_s / sot_s,
        "ideal_speedup": ideal_speedup(normal_tokens, skeleton_tokens, tokens_per_point, step1, stepn),
        "normal_ttft_s": statistics.median(r["normal"]["ttft_s"] for r in runs),
        "sot_ttft_skeleton_s": statistics.median(r["sot"]["ttft_skeleton_s"] for r in runs),
        "sot_ttft_answer_s": statistics.median(r["sot"]["ttft_answer_s"] for r in runs),
        "sot_skeleton_s": statistics.median(r["sot"]["skeleton_s"] for r in runs),
        "sot_expansion_s": statistics.median(r["sot"]["expansion_s"] for r in runs),
        "step1_ms": step1, "stepn_ms": stepn,
        "runs": runs,
    }


def row_summary(r: dict) -> str:
    return (f"N={r['points']:>2} L={r['tokens_per_point']:>3} ctx={r['context_tokens']:>4} "
            f"cache={'on ' if r['prefix_caching'] else 'off'} normal={r['normal_s']*1e3:7.0f}ms "
            f"sot={r['sot_s']*1e3:6.0f}ms x{r['speedup']:.2f} (ideal x{r['ideal_speedup']:.2f}) "
            f"ttft n={r['normal_ttft_s']*1e3:.0f} sot={r['sot_ttft_answer_s']*1e3:.0f}ms")


__all__ = [
    "Prompts",
    "Timed",
    "compare",
    "decode_steps",
    "ideal_speedup",
    "normal_exact",
    "normal_once",
    "row_summary",
    "sot_exact",
    "sot_once",
    "timed_request",
]


async def normal_exact(engine: Any, p: Prompts, prompt_tokens: int, n_tokens: int, *, detokenize: bool = True) -> dict:
    """Normal decoding with exactly the prompt and answer lengths a pipeline run had (fresh prompt ids)."""
    t0 = time.perf_counter()
    r = await timed_request(engine, p.ids(prompt_tokens), n_tokens, detokenize=detokenize)
    return {"total_s": r.last - t0, "ttft_s": r.first - t0, "tokens": r.n_tokens, "step_ms": 1e3 * r.step_s}


async def sot_exact(engine: Any, p: Prompts, skeleton_prompt_tokens: int, skeleton_tokens: int,
                    point_prompt_tokens: list[int], tokens_per_point: int, *, detokenize: bool = True) -> dict:
    """SoT with exactly the lengths a pipeline run had: the skeleton request's prompt and output, then every
    point request (skeleton prompt + skeleton + its own tail, to its recorded prompt length) at once."""
    skel_prompt = p.ids(skeleton_prompt_tokens)
    t0 = time.perf_counter()
    sk = await timed_request(engine, skel_prompt, skeleton_tokens, detokenize=detokenize)
    base = skel_prompt + sk.token_ids
    prompts = [base + p.ids(max(1, n - len(base))) for n in point_prompt_tokens]
    pts = await asyncio.gather(*(timed_request(engine, ids, tokens_per_point, detokenize=detokenize)
                                 for ids in prompts))
    t_end = max(r.last for r in pts)
    return {"total_s": t_end - t0, "skeleton_s": sk.last - t0, "expansion_s": t_end - sk.last,
            "ttft_skeleton_s": sk.first - t0, "ttft_answer_s": min(r.first for r in pts) - t0,
            "point_step_ms": 1e3 * statistics.median(r.step_s for r in pts),
            "point_cached_prompt_tokens": statistics.median(r.cached_prompt_tokens for r in pts),
            "point_times_s": [[r.first - t0, r.last - t0] for r in pts]}
