"""Per-point grounding benchmark: does a point's prompt see (and would it cite) the passage that holds the
point's content more often with per-point retrieval, and what does that add?

No model writes text here (none can run at this scale on a CPU), so answers are simulated from labelled data:

* multi-topic: a compound question joins 2 to 4 dev questions (``--questions``, each labelled with its relevant
  page) whose pages differ; its skeleton is one point per sub-question, titled by the sub-question itself
  (``question`` titles: the most a title can say) or by its first 8 content words (``short``: like a skeleton
  line). A point's gold page is its sub-question's page.
* single-topic: one dev question; its skeleton is the section headings (``##``) of its page, up to 4, as a
  skeleton that follows the documentation would be. A point's gold is that page, and its own section.

For every point it records whether a chunk of the gold page (and section) is among the passages the POINT's
prompt sees, and at which source number, under: the shared retrieval alone (``shared k``: the question's top
k, as with ``per_point_retrieval=False``; k = 5 + per_point_k gives every point prompt as many passages as
per-point retrieval does), and the shared top 5 plus each point's own ``per_point_k`` with either
``per_point_query`` (sotrag's own ``Grounding.for_point`` on the real index, gathered per answer as the
pipeline does).

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
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import machine  # the CPU, threads and versions of the run

if TYPE_CHECKING:
    from sotrag.app.config import PointQuery

RESULTS = Path(__file__).parent / "results"
SHARED_K = 5  # Settings.passages_k's default
QUERIES: tuple[PointQuery, ...] = ("question_title", "title")  # Settings.per_point_query
_STOP = "how do i can my the a an to of is what when should that it for with in on and or does are be which why "
_STOP += "where me we you your this there from by as at if so instead like way"
STOPWORDS = frozenset(_STOP.split())


@dataclass(frozen=True)
class Point:
    title: str
    gold: frozenset[str]  # pages holding the point's content
    section: str | None = None  # and the section, where known (cleaned heading)


@dataclass(frozen=True)
class Case:
    question: str
    points: tuple[Point, ...]


def short_title(question: str, words: int = 8) -> str:
    """A skeleton-like line for a sub-question: its first content words."""
    kept = [w for w in re.findall(r"[A-Za-z0-9_'-]+", question) if w.lower() not in STOPWORDS]
    return " ".join(kept[:words]).capitalize()


def clean_heading(text: str) -> str:
    """A markdown heading as words: no ``{ #anchor }``, backticks or emphasis."""
    return " ".join(re.sub(r"\{\s*#[^}]*\}|[`*]", "", text).split())


def multi_topic(questions: list[Any], n: int, sizes: list[int], seed: int, short: bool) -> list[Case]:
    """``n`` compound questions, sizes in turn, each joining sub-questions whose gold pages do not overlap."""
    rng = random.Random(seed)
    out: list[Case] = []
    seen: set[tuple[str, ...]] = set()
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        pick = rng.sample(questions, sizes[len(out) % len(sizes)])
        pages = [p for q in pick for p in q.relevant]
        key = tuple(sorted(q.question for q in pick))
        if len(pages) != len(set(pages)) or key in seen:
            continue
        seen.add(key)
        points = tuple(Point(short_title(q.question) if short else q.question, frozenset(q.relevant)) for q in pick)
        out.append(Case(" ".join(q.question for q in pick), points))
    return out


def single_topic(questions: list[Any], corpus: Path, max_points: int = 4) -> list[Case]:
    """One case per page: its first dev question, its ``##`` headings as the skeleton."""
    out: list[Case] = []
    pages: set[str] = set()
    for q in questions:
        if len(q.relevant) != 1 or q.relevant[0] in pages or not (corpus / q.relevant[0]).is_file():
            continue
        lines = (corpus / q.relevant[0]).read_text(encoding="utf-8").splitlines()
        heads = list(dict.fromkeys(clean_heading(x[3:]) for x in lines if x.startswith("## ")))[:max_points]
        if len(heads) < 2:
            continue
        pages.add(q.relevant[0])
        out.append(Case(q.question, tuple(Point(h, frozenset(q.relevant), h) for h in heads)))
    return out


def in_section(passage: Any, point: Point) -> bool:
    return passage.source in point.gold and point.section in [clean_heading(s) for s in passage.heading.split(" > ")]


def seen_row(numbered: list[tuple[int, Any]], point: Point, shared_n: int, extra: list[Any] | None) -> dict[str, Any]:
    """Where the gold page (and section) is among the passages a point sees (numbers as the model sees them)."""
    hits = [n for n, p in numbered if p.source in point.gold]
    row: dict[str, Any] = {
        "seen": bool(hits),
        "first_n": min(hits) if hits else None,
        "via_point": bool(hits) and min(hits) > shared_n,
        "passages": len(numbered),
    }
    if point.section is not None:
        row["section_seen"] = any(in_section(p, point) for _, p in numbered)
    if extra is not None:
        row["fresh"] = len(extra)
        row["fresh_off_gold_page"] = sum(p.source not in point.gold for _, p in extra)
    return row


async def case_rows(index: Any, case: Case, ppks: list[int]) -> dict[str, list[tuple[dict, list, list | None]]]:
    """Every condition for one question: per point, its row, the passages it sees, its own passages."""
    from sotrag.app.passages import Grounding, source_of

    rows: dict[str, list[tuple[dict, list, list | None]]] = {}
    for k in sorted({SHARED_K, *(SHARED_K + k for k in ppks)}):
        numbered = list(enumerate(await index.aretrieve(case.question, k), start=1))
        rows[f"shared k={k}"] = [(seen_row(numbered, p, k, None), numbered, None) for p in case.points]
    base = await index.aretrieve(case.question, SHARED_K)
    shared = list(enumerate(base, start=1))
    for query in QUERIES:
        for ppk in ppks:
            g = Grounding(passages=list(base), sources=[source_of(n, p) for n, p in shared])
            extras = await asyncio.gather(
                *(g.for_point(index, case.question, p.title, ppk, query=query) for p in case.points)
            )
            rows[f"shared {SHARED_K} + point {ppk} ({query})"] = [
                (seen_row(shared + list(e), p, SHARED_K, list(e)), shared + list(e), list(e))
                for p, e in zip(case.points, extras, strict=True)
            ]
    return rows


class Citer:
    """Simulated citation: the seen passage nearest to the point's title by the embedder."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.cache: dict[str, np.ndarray] = {}

    def cite(self, title: str, numbered: list[tuple[int, Any]]) -> Any:
        new = {p.chunk_id or p.text: p for _, p in numbered}
        missing = [(key, p) for key, p in new.items() if key not in self.cache]
        if missing:
            vecs = self.embedder.embed([f"{p.label}\n{p.text}" for _, p in missing])
            self.cache.update({key: v for (key, _), v in zip(missing, vecs, strict=True)})
        q = self.embedder.embed_query(title)
        scores = [float(self.cache[p.chunk_id or p.text] @ q) for _, p in numbered]
        return numbered[int(np.argmax(scores))][1]


def summarize(rows: list[dict[str, Any]], cited: list[bool], cited_section: list[bool]) -> dict[str, Any]:
    seen = [r for r in rows if r["seen"]]
    out: dict[str, Any] = {
        "points": len(rows),
        "gold_seen": round(len(seen) / len(rows), 4),
        "gold_seen_only_via_point_passages": round(sum(r["via_point"] for r in rows) / len(rows), 4),
        "gold_first_n_mean": round(statistics.mean(r["first_n"] for r in seen), 2) if seen else None,
        "passages_per_point_prompt": round(statistics.mean(r["passages"] for r in rows), 2),
        "sim_cited_gold": round(sum(cited) / len(cited), 4),
    }
    if "section_seen" in rows[0]:
        out["section_seen"] = round(sum(r["section_seen"] for r in rows) / len(rows), 4)
        out["sim_cited_section"] = round(sum(cited_section) / len(cited_section), 4)
    if "fresh" in rows[0]:
        out["fresh_passages_per_point"] = round(statistics.mean(r["fresh"] for r in rows), 2)
        fresh = sum(r["fresh"] for r in rows)
        out["fresh_off_gold_page_share"] = round(sum(r["fresh_off_gold_page"] for r in rows) / max(fresh, 1), 4)
    return out


def token_counter(tokenizer_dir: str | None, embedder: Any) -> tuple[Any, str]:
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        return (lambda s: len(tok.encode(s, add_special_tokens=False))), f"{tokenizer_dir} (given)"
    tok = embedder.model.tokenizer
    return (lambda s: len(tok(s, add_special_tokens=False, verbose=False)["input_ids"])), (
        f"{embedder.model_name} WordPiece (the embedder's; not the served model's)"
    )


async def timings(index: Any, cases: list[Case], ppk: int, rounds: int) -> dict[str, Any]:
    """Retrieval time on this CPU: the shared query, the per-point queries of one answer gathered (as the
    pipeline does), and one per-point query alone; both query kinds, interleaved."""
    from sotrag.app.passages import Grounding

    ms: dict[str, list[float]] = {}

    def add(name: str, start: float) -> None:
        ms.setdefault(name, []).append((time.perf_counter() - start) * 1000)

    for _ in range(rounds):
        for c in cases:
            t = time.perf_counter()
            base = await index.aretrieve(c.question, SHARED_K)
            add("shared_query", t)
            for q in QUERIES:
                t = time.perf_counter()
                await asyncio.gather(
                    *(Grounding(passages=list(base)).for_point(index, c.question, p.title, ppk, query=q)
                      for p in c.points)
                )
                add(f"points_of_one_answer_gathered ({q})", t)
                t = time.perf_counter()
                await Grounding(passages=list(base)).for_point(index, c.question, c.points[0].title, ppk, query=q)
                add(f"one_point_alone ({q})", t)
    return {
        "answers": len(cases) * rounds,
        "points_per_answer_mean": round(statistics.mean(len(c.points) for c in cases), 2),
        "per_point_k": ppk,
        "ms": {k: {"p50": round(float(np.percentile(v, 50)), 1), "p90": round(float(np.percentile(v, 90)), 1)}
               for k, v in ms.items()},
        "calls_added_per_answer": "the points' queries of one answer are gathered into 1 embedding call of P "
        "queries + 1 vector search + the lexical search of each (hybrid), for any number of points P",
    }


def paired_gains(
    rows: dict[str, list[dict[str, Any]]],
    cited: dict[str, list[bool]],
    cited_sec: dict[str, list[bool]],
    ppks: list[int],
    seed: int,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Per-point retrieval minus the shared top 5 + per_point_k (the same passages per point prompt), in
    points of share, with a 95% bootstrap interval over questions (a question's points move together)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for query in QUERIES:
        for ppk in ppks:
            a, b = f"shared {SHARED_K} + point {ppk} ({query})", f"shared k={SHARED_K + ppk}"
            cases = np.array([r["case"] for r in rows[a]])
            metrics = {
                "gold_seen": ([r["seen"] for r in rows[a]], [r["seen"] for r in rows[b]]),
                "sim_cited_gold": (cited[a], cited[b]),
            }
            if "section_seen" in rows[a][0]:
                metrics["section_seen"] = ([r["section_seen"] for r in rows[a]], [r["section_seen"] for r in rows[b]])
                metrics["sim_cited_section"] = (cited_sec[a], cited_sec[b])
            n = int(cases.max()) + 1
            res: dict[str, Any] = {}
            for metric, (x, y) in metrics.items():
                diff = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
                per_case_sum = np.bincount(cases, weights=diff, minlength=n)
                per_case_n = np.bincount(cases, minlength=n)
                draws = rng.integers(0, n, size=(resamples, n))
                boot = per_case_sum[draws].sum(axis=1) / per_case_n[draws].sum(axis=1)
                res[metric] = {
                    "gain": round(float(diff.mean()) * 100, 1),
                    "ci95": [round(float(np.percentile(boot, q)) * 100, 1) for q in (2.5, 97.5)],
                }
            out[f"{a} vs {b}"] = res
    return out


def print_table(name: str, res: dict[str, Any]) -> None:
    sec = "section_seen" in next(iter(res.values()))
    print(f"\n{name}: {next(iter(res.values()))['points']} points")
    head = f"  {'condition':38} {'gold seen':>9} {'only via pt':>11} {'first n':>7} {'passages':>8} {'sim-cited':>9}"
    print(head + (f" {'section':>8} {'sim-cit sec':>11}" if sec else "") + f" {'fresh':>5} {'off-page':>8}")
    for cond, m in res.items():
        line = (f"  {cond:38} {m['gold_seen']:9.1%} {m['gold_seen_only_via_point_passages']:11.1%} "
                f"{m['gold_first_n_mean'] or 0:7.2f} {m['passages_per_point_prompt']:8.2f} {m['sim_cited_gold']:9.1%}")
        if sec:
            line += f" {m['section_seen']:8.1%} {m['sim_cited_section']:11.1%}"
        if "fresh_passages_per_point" in m:
            line += f" {m['fresh_passages_per_point']:5.2f} {m['fresh_off_gold_page_share']:8.1%}"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder of documents (the dev questions' corpus)")
    ap.add_argument("--questions", type=Path, required=True, help='JSONL: {"question": ..., "relevant": [page]}')
    ap.add_argument("--index-dir", type=Path, help="index folder to build or reuse (default: a temporary one)")
    ap.add_argument("--tokenizer", help="Hugging Face tokenizer folder for the prompt-token count")
    ap.add_argument("--compounds", type=int, default=120, help="multi-topic questions to build")
    ap.add_argument("--sizes", default="2,3,4", help="sub-questions per multi-topic question, in turn")
    ap.add_argument("--per-point-k", default="1,2,3", help="per-point passages to compare (2 is the default)")
    ap.add_argument("--timing-answers", type=int, default=30)
    ap.add_argument("--timing-rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "grounding.json")
    args = ap.parse_args()

    from sotrag.prompts import build as prompts
    from sotrag.prompts import templates
    from sotrag.retrieval.evaluation import load_questions
    from sotrag.retrieval.index import DocumentIndex

    sizes = [int(s) for s in args.sizes.split(",")]
    ppks = [int(s) for s in args.per_point_k.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        index = DocumentIndex.open(args.index_dir or Path(tmp) / "index", create=True)
        t = time.perf_counter()
        summary = index.ingest([args.corpus])
        chunks = index.stats()["chunks"]
        print(f"[index] {chunks} chunks ({summary.chunks_embedded} embedded now) in {time.perf_counter() - t:.1f}s; "
              f"search mode {index.search_config.mode}")
        questions = load_questions(args.questions)
        scenarios = {
            "multi-topic, question titles": multi_topic(questions, args.compounds, sizes, args.seed, short=False),
            "multi-topic, short titles": multi_topic(questions, args.compounds, sizes, args.seed, short=True),
            "single-topic, section titles": single_topic(questions, args.corpus),
        }
        for name, cases in scenarios.items():
            print(f"[cases] {name}: {len(cases)} questions, {sum(len(c.points) for c in cases)} points")
        count, tokenizer_name = token_counter(args.tokenizer, index.embedder)
        citer = Citer(index.embedder)
        embedder_name = index.embedder.model_name
        quality: dict[str, Any] = {}
        gains: dict[str, Any] = {}
        tokens: dict[str, dict[str, list[int]]] = {}
        chars: dict[str, dict[str, list[int]]] = {}
        for name, cases in scenarios.items():
            rows: dict[str, list[dict[str, Any]]] = {}
            cited: dict[str, list[bool]] = {}
            cited_sec: dict[str, list[bool]] = {}
            for case_no, case in enumerate(cases):
                for cond, point_rows in asyncio.run(case_rows(index, case, ppks)).items():
                    for point, (row, numbered, extra) in zip(case.points, point_rows, strict=True):
                        chosen = citer.cite(point.title, numbered)
                        rows.setdefault(cond, []).append(row | {"case": case_no})
                        cited.setdefault(cond, []).append(chosen.source in point.gold)
                        cited_sec.setdefault(cond, []).append(point.section is not None and in_section(chosen, point))
                        if extra is not None:
                            text = templates.POINT_PASSAGES.format(passages=prompts.format_passages(extra))
                            tokens.setdefault(name, {}).setdefault(cond, []).append(count(text) if extra else 0)
                            chars.setdefault(name, {}).setdefault(cond, []).append(len(text) if extra else 0)
            quality[name] = {cond: summarize(r, cited[cond], cited_sec[cond]) for cond, r in rows.items()}
            gains[name] = paired_gains(rows, cited, cited_sec, ppks, args.seed)
        shared_tokens = [
            count(prompts.format_passages(list(enumerate(asyncio.run(index.aretrieve(c.question, SHARED_K)), 1))))
            for c in scenarios["multi-topic, short titles"][:40]
        ]
        timing = asyncio.run(
            timings(index, scenarios["multi-topic, short titles"][: args.timing_answers], 2, args.timing_rounds)
        )
        index.close()

    costs = {
        name: {
            cond: {
                "mean": round(statistics.mean(v), 1),
                "p90": int(np.percentile(v, 90)),
                "chars_mean": round(statistics.mean(chars[name][cond]), 1),
            }
            for cond, v in conds.items()
        }
        for name, conds in tokens.items()
    }
    print("\nPer-point grounding (simulated skeletons and citations: see the docstring)")
    for name, res in quality.items():
        print_table(name, res)
    print("\nGain of per-point retrieval over the same passages all shared, points of share [95% CI over questions]:")
    for name, pairs in gains.items():
        for pair, metrics in pairs.items():
            text = "  ".join(
                f"{m} {v['gain']:+.1f} [{v['ci95'][0]:+.1f}, {v['ci95'][1]:+.1f}]" for m, v in metrics.items()
            )
            print(f"  {name:30} {pair:55} {text}")
    print(f"\nExtra prompt tokens per point prompt ({tokenizer_name}); the shared top {SHARED_K} passages are "
          f"{statistics.mean(shared_tokens):.0f} tokens (mean, multi-topic):")
    for name, conds in costs.items():
        for cond, c in conds.items():
            print(f"  {name:30} {cond:38} mean {c['mean']:6.1f}  p90 {c['p90']:5d}  ({c['chars_mean']:.0f} chars)")
    print(f"\nRetrieval time on this CPU, ms ({timing['answers']} answers of {timing['points_per_answer_mean']} "
          f"points, per_point_k={timing['per_point_k']}):")
    for k, v in timing["ms"].items():
        print(f"  {k:45} p50 {v['p50']:6.1f}  p90 {v['p90']:6.1f}")

    out = {
        "machine": machine(),
        "embedder": embedder_name,
        "index_chunks": chunks,
        "search_mode": "hybrid (the index default)",
        "seed": args.seed,
        "sizes": sizes,
        "cases": {name: len(cases) for name, cases in scenarios.items()},
        "simulated": {
            "skeleton": "multi-topic: one point per sub-question of a compound of labelled dev questions; "
            "single-topic: the ## headings of the question's page",
            "titles": {"question": "the sub-question itself", "short": "its first 8 content words",
                       "section": "the heading text"},
            "gold": "the sub-question's relevant page; single-topic also the heading's section",
            "citation": "the seen passage nearest (embedder cosine) to the point's title, standing for its text",
        },
        "quality": quality,
        "gain_over_equal_shared_passages": gains,
        "prompt_tokens": {
            "tokenizer": tokenizer_name,
            "shared_top5_passages_mean": round(statistics.mean(shared_tokens), 1),
            "per_point_extra": costs,
        },
        "retrieval_time_cpu": timing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"  -> {args.out}")


if __name__ == "__main__":
    main()
