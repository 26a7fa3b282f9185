"""Per-point grounding benchmark: does a point's prompt see (and would it cite) the passage that holds the
point's content more often with per-point retrieval, and what does that add?

No model writes text here (none can run at this scale on a CPU), so the answers are built from labelled parts:

* a compound question joins 2 to 4 dev questions (``--questions``, each labelled with its relevant page) whose
  pages differ; its skeleton is simulated as one point per sub-question, titled either by the sub-question
  itself (``question`` titles: the most a title can say) or by its first 8 content words (``short`` titles,
  like a skeleton line);
* the point's gold page is its sub-question's relevant page: the point's content is there.

For every point it records whether a chunk of the gold page is among the passages the POINT's prompt sees, and
at which source number, under: the shared retrieval alone (``shared k``: the question's top k, as with
``per_point_retrieval=False``), the shared top 5 plus the point's own ``per_point_k`` (sotrag's own
``Grounding.for_point`` on the real index, gathered per answer as the pipeline does), and the shared top
5 + per_point_k (the same number of passages in every point prompt, all shared).

Simulated citation: the cited passage is the one of those the point sees whose embedding is nearest to the
point's title (the point's text is not written here). A model may cite otherwise; this says whether the right
passage is there AND stands out by content among what the point sees (more passages: more to confuse).

Costs: the retrieval time per answer (the per-point queries of one answer are gathered into one embedding call
and one search, as in the pipeline) and per point alone, on this CPU; the prompt tokens each point's own
passages add (not in the prefix every point shares, so prefilled once per point), counted with ``--tokenizer``
(a Hugging Face tokenizer folder, e.g. the served model's) or else the embedder's tokenizer.

Usage (the corpus is an argument; the suite never needs it)::

    python benchmarks/grounding.py --corpus ../shared/data/corpus/fastapi-docs \\
        --questions benchmarks/data/fastapi_dev.jsonl [--index-dir DIR] [--tokenizer DIR]

Results: a table on stdout and ``benchmarks/results/grounding.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SHARED_K = 5  # Settings.passages_k's default
_STOP = "how do i can my the a an to of is what when should that it for with in on and or does are be which why "
_STOP += "where me we you your this there from by as at if so instead like way"
STOPWORDS = frozenset(_STOP.split())


@dataclass(frozen=True)
class Part:
    question: str
    gold: frozenset[str]


@dataclass(frozen=True)
class Compound:
    question: str
    parts: tuple[Part, ...]


def machine() -> dict[str, Any]:
    import faiss
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def short_title(question: str, words: int = 8) -> str:
    """A skeleton-like line for a sub-question: its first content words."""
    kept = [w for w in re.findall(r"[A-Za-z0-9_'-]+", question) if w.lower() not in STOPWORDS]
    return " ".join(kept[:words]).capitalize()


def compounds(parts: list[Part], n: int, sizes: list[int], seed: int) -> list[Compound]:
    """``n`` compound questions, sizes in turn, each joining sub-questions whose gold pages do not overlap."""
    rng = random.Random(seed)
    out: list[Compound] = []
    seen: set[tuple[str, ...]] = set()
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        size = sizes[len(out) % len(sizes)]
        pick = rng.sample(parts, size)
        pages = [p for part in pick for p in part.gold]
        key = tuple(sorted(p.question for p in pick))
        if len(pages) != len(set(pages)) or key in seen:
            continue
        seen.add(key)
        out.append(Compound(" ".join(p.question for p in pick), tuple(pick)))
    return out


def seen_row(numbered: list[tuple[int, Any]], gold: frozenset[str], shared_n: int) -> dict[str, Any]:
    """Where the gold page is among the passages a point sees (numbers as the model sees them)."""
    hits = [n for n, p in numbered if p.source in gold]
    return {
        "seen": bool(hits),
        "first_n": min(hits) if hits else None,
        "via_point": bool(hits) and min(hits) > shared_n,
        "passages": len(numbered),
    }


async def answer_rows(index: Any, c: Compound, titles: list[str], ppks: list[int]) -> dict[str, Any]:
    """Every condition for one compound question: what each of its points sees."""
    from sotrag.app.passages import Grounding, source_of

    rows: dict[str, Any] = {}
    ks = sorted({SHARED_K, *(SHARED_K + k for k in ppks)})
    for k in ks:
        found = await index.aretrieve(c.question, k)
        numbered = list(enumerate(found, start=1))
        rows[f"shared k={k}"] = [seen_row(numbered, part.gold, k) | {"numbered": numbered} for part in c.parts]
    base = await index.aretrieve(c.question, SHARED_K)
    for ppk in ppks:
        g = Grounding(passages=list(base), sources=[source_of(i, p) for i, p in enumerate(base, start=1)])
        extras = await asyncio.gather(*(g.for_point(index, c.question, t, ppk) for t in titles))
        shared = list(enumerate(base, start=1))
        rows[f"shared {SHARED_K} + point {ppk}"] = [
            seen_row(shared + list(extra), part.gold, SHARED_K) | {"numbered": shared + list(extra), "extra": extra}
            for part, extra in zip(c.parts, extras, strict=True)
        ]
    # The same, the point's query being its title alone (a design alternative, not what sotrag sends).
    g = Grounding(passages=list(base), sources=[source_of(i, p) for i, p in enumerate(base, start=1)])
    extras = await asyncio.gather(*(g.for_point(index, "", t, 2) for t in titles))
    shared = list(enumerate(base, start=1))
    rows[f"shared {SHARED_K} + point 2 (title-only query)"] = [
        seen_row(shared + list(extra), part.gold, SHARED_K) | {"numbered": shared + list(extra)}
        for part, extra in zip(c.parts, extras, strict=True)
    ]
    return rows


def cite(embedder: Any, cache: dict[str, np.ndarray], point_text: str, numbered: list[tuple[int, Any]]) -> Any:
    """Simulated citation: the seen passage nearest to the point's text by the embedder."""
    missing = [p for _, p in numbered if (p.chunk_id or p.text) not in cache]
    if missing:
        for p, v in zip(missing, embedder.embed([f"{p.label}\n{p.text}" for p in missing]), strict=True):
            cache[p.chunk_id or p.text] = v
    q = embedder.embed_query(point_text)
    scores = [float(cache[p.chunk_id or p.text] @ q) for _, p in numbered]
    return numbered[int(np.argmax(scores))][1]


def summarize(rows: list[dict[str, Any]], cited: list[bool]) -> dict[str, Any]:
    seen = [r for r in rows if r["seen"]]
    return {
        "points": len(rows),
        "gold_seen": round(len(seen) / len(rows), 4),
        "gold_seen_via_point_passages": round(sum(r["via_point"] for r in rows) / len(rows), 4),
        "gold_first_n_mean": round(statistics.mean(r["first_n"] for r in seen), 2) if seen else None,
        "passages_per_point_prompt": round(statistics.mean(r["passages"] for r in rows), 2),
        "sim_cited_gold": round(sum(cited) / len(cited), 4),
    }


def count_tokens_fn(tokenizer_dir: str | None, embedder: Any) -> tuple[Any, str]:
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        return (lambda s: len(tok.encode(s, add_special_tokens=False))), f"{tokenizer_dir} (given)"
    tok = embedder.model.tokenizer
    return (lambda s: len(tok(s, add_special_tokens=False, verbose=False)["input_ids"])), (
        f"{embedder.model_name} WordPiece (the embedder's; not the served model's)"
    )


async def timings(index: Any, cs: list[Compound], titles: list[list[str]], ppk: int, rounds: int) -> dict[str, Any]:
    """Retrieval time on this CPU: shared query, the per-point queries of one answer gathered (as the pipeline
    does), and one per-point query alone."""
    from sotrag.app.passages import Grounding

    shared_ms: list[float] = []
    answer_ms: list[float] = []
    alone_ms: list[float] = []
    points: list[int] = []
    for _ in range(rounds):
        for c, ts in zip(cs, titles, strict=True):
            t = time.perf_counter()
            base = await index.aretrieve(c.question, SHARED_K)
            shared_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await asyncio.gather(*(Grounding(passages=list(base)).for_point(index, c.question, x, ppk) for x in ts))
            answer_ms.append((time.perf_counter() - t) * 1000)
            points.append(len(ts))
            t = time.perf_counter()
            await Grounding(passages=list(base)).for_point(index, c.question, ts[0], ppk)
            alone_ms.append((time.perf_counter() - t) * 1000)

    def pct(v: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(v, 50)), 1), "p90": round(float(np.percentile(v, 90)), 1)}

    return {
        "answers": len(answer_ms),
        "points_per_answer_mean": round(statistics.mean(points), 2),
        "shared_query_ms": pct(shared_ms),
        "per_point_queries_of_one_answer_gathered_ms": pct(answer_ms),
        "one_per_point_query_alone_ms": pct(alone_ms),
        "retrieval_calls_per_answer_added": "1 embedding call + 1 vector search (+ the lexical side of hybrid) "
        "for all points of the answer together (RetrieveBatcher), i.e. one per point unbatched",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder of documents (the dev questions' corpus)")
    ap.add_argument("--questions", type=Path, required=True, help='JSONL: {"question": ..., "relevant": [page]}')
    ap.add_argument("--index-dir", type=Path, help="index folder to build or reuse (default: a temporary one)")
    ap.add_argument("--tokenizer", help="Hugging Face tokenizer folder for the prompt-token count")
    ap.add_argument("--compounds", type=int, default=120, help="compound questions to build")
    ap.add_argument("--sizes", default="2,3,4", help="sub-questions per compound question, in turn")
    ap.add_argument("--per-point-k", default="1,2,3", help="per-point passages to compare (2 is the default)")
    ap.add_argument("--timing-answers", type=int, default=30)
    ap.add_argument("--timing-rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "grounding.json")
    args = ap.parse_args()

    from sotrag.app.passages import Grounding  # noqa: F401  (fail early if the package is not importable)
    from sotrag.prompts import build as prompts
    from sotrag.prompts import templates
    from sotrag.retrieval.evaluation import load_questions
    from sotrag.retrieval.index import DocumentIndex

    with tempfile.TemporaryDirectory() as tmp:
        index = DocumentIndex.open(args.index_dir or Path(tmp) / "index", create=True)
        t = time.perf_counter()
        summary = index.ingest([args.corpus])
        chunks = index.stats()["chunks"]
        print(f"[index] {chunks} chunks ({summary.chunks_embedded} embedded now) "
              f"in {time.perf_counter() - t:.1f}s; search mode {index.search_config.mode}")
        parts = [Part(q.question, frozenset(q.relevant)) for q in load_questions(args.questions)]
        sizes = [int(s) for s in args.sizes.split(",")]
        ppks = [int(s) for s in args.per_point_k.split(",")]
        cs = compounds(parts, args.compounds, sizes, args.seed)
        print(f"[questions] {len(cs)} compound questions of {sizes} parts from {len(parts)} dev questions")
        embedder = index.embedder
        count, tokenizer_name = count_tokens_fn(args.tokenizer, embedder)
        cache: dict[str, np.ndarray] = {}
        results: dict[str, Any] = {}
        extra_tokens: dict[str, list[int]] = {}
        fresh: dict[str, list[int]] = {}
        for style in ("question", "short"):
            per_cond: dict[str, list[dict[str, Any]]] = {}
            cited: dict[str, list[bool]] = {}
            for c in cs:
                titles = [p.question if style == "question" else short_title(p.question) for p in c.parts]
                rows = asyncio.run(answer_rows(index, c, titles, ppks))
                for cond, point_rows in rows.items():
                    for part, title, r in zip(c.parts, titles, point_rows, strict=True):
                        cited_passage = cite(embedder, cache, title, r.pop("numbered"))
                        cited.setdefault(cond, []).append(cited_passage.source in part.gold)
                        extra = r.pop("extra", None)
                        if extra is not None and style == "short":
                            text = templates.POINT_PASSAGES.format(passages=prompts.format_passages(extra))
                            extra_tokens.setdefault(cond, []).append(count(text) if extra else 0)
                            fresh.setdefault(cond, []).append(len(extra))
                        per_cond.setdefault(cond, []).append(r)
            results[style] = {cond: summarize(rows, cited[cond]) for cond, rows in per_cond.items()}
        costs = {
            cond: {
                "extra_prompt_tokens_per_point_mean": round(statistics.mean(v), 1),
                "extra_prompt_tokens_per_point_p90": int(np.percentile(v, 90)),
                "fresh_passages_per_point_mean": round(statistics.mean(fresh[cond]), 2),
                "points_with_fewer_fresh_than_asked": round(
                    sum(f < int(cond.rsplit(" ", 1)[1]) for f in fresh[cond]) / len(fresh[cond]), 4
                ),
            }
            for cond, v in extra_tokens.items()
        }
        shared_tokens = [count(prompts.format_passages(list(enumerate(r, 1))))
                         for r in [asyncio.run(index.aretrieve(c.question, SHARED_K)) for c in cs[:40]]]
        timing_cs = cs[: args.timing_answers]
        timing_titles = [[short_title(p.question) for p in c.parts] for c in timing_cs]
        timing = asyncio.run(timings(index, timing_cs, timing_titles, 2, args.timing_rounds))
        index.close()

    print(f"\nPer-point grounding: {sum(len(c.parts) for c in cs)} points in {len(cs)} compound questions")
    header = f"{'titles':9} {'condition':38} {'gold seen':>9} {'via point':>9} {'first n':>8} {'passages':>8} " \
             f"{'sim-cited gold':>14}"
    print(header)
    for style, conds in results.items():
        for cond, m in conds.items():
            print(f"{style:9} {cond:38} {m['gold_seen']:9.1%} {m['gold_seen_via_point_passages']:9.1%} "
                  f"{m['gold_first_n_mean'] or 0:8.2f} {m['passages_per_point_prompt']:8.2f} "
                  f"{m['sim_cited_gold']:14.1%}")
    print(f"\nExtra prompt tokens per point ({tokenizer_name}); the shared top {SHARED_K} passages are "
          f"{statistics.mean(shared_tokens):.0f} tokens (mean):")
    for cond, cst in costs.items():
        print(f"  {cond:20} mean {cst['extra_prompt_tokens_per_point_mean']:6.1f}  p90 "
              f"{cst['extra_prompt_tokens_per_point_p90']:5d}  fresh passages "
              f"{cst['fresh_passages_per_point_mean']:.2f}  fewer than asked "
              f"{cst['points_with_fewer_fresh_than_asked']:.1%}")
    print(f"\nRetrieval time on this CPU (ms, per_point_k=2, {timing['answers']} answers of "
          f"{timing['points_per_answer_mean']} points): shared {timing['shared_query_ms']}, per-point queries of "
          f"one answer gathered {timing['per_point_queries_of_one_answer_gathered_ms']}, one alone "
          f"{timing['one_per_point_query_alone_ms']}")

    out = {
        "machine": machine(),
        "embedder": embedder.model_name,
        "index_chunks": chunks,
        "search_mode": "hybrid (the index default)",
        "compound_questions": len(cs),
        "points": sum(len(c.parts) for c in cs),
        "sizes": sizes,
        "seed": args.seed,
        "simulated": {
            "skeleton": "one point per sub-question of a compound question built from labelled dev questions",
            "titles": {"question": "the sub-question itself", "short": "its first 8 content words"},
            "gold": "the sub-question's relevant page (any chunk of it holds the point's content)",
            "citation": "the seen passage nearest (embedder cosine) to the point's title, standing for its text",
        },
        "quality": results,
        "prompt_tokens": {
            "tokenizer": tokenizer_name,
            "shared_top5_passages_mean": round(statistics.mean(shared_tokens), 1),
            "per_point": costs,
        },
        "retrieval_time_cpu": timing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"  -> {args.out}")


if __name__ == "__main__":
    main()
