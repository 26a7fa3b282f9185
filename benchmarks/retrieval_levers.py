"""The retrieval levers not measured by ``retrieval_variants.py``, chosen on the tune half of the dev questions and
confirmed on the test half: section packing in the chunker (heading paths kept), fusion by weighted scores instead
of reciprocal ranks, page-level aggregation of chunk scores, and query handling on top of each.

    OMP_NUM_THREADS=1 python benchmarks/retrieval_levers.py --corpus ../shared/data/corpus/fastapi-docs \\
        [--cache /tmp/sotrag-retrieval-variants]

Same protocol, split, search rebuild and embedding cache as ``retrieval_variants.py`` (imported from it): every
setting is scored on ``tune``; one lever at a time is compared with the shipped setting, and a lever is adopted only
if it gains ``ADOPT_MARGIN`` hybrid nDCG@10 on tune and the test half confirms it (nDCG@10 and recall@5 no lower).
The ingest cost of a chunking is its embedding time for the whole corpus in this run (cached texts are not
re-embedded, so each chunking's seconds count only the texts that are new to it, and ``chunks`` and
``embedded_chars`` say how much each chunking has to embed from scratch).

Writes ``benchmarks/results/retrieval-levers.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval_variants import (
    _QUESTION_WORDS,
    ADOPT_MARGIN,
    RESULTS,
    EmbedCache,
    Lexical,
    Row,
    corpus_documents,
    keywords,
    machine,
    score,
    split_half,
)

FETCH = 50


@dataclass(frozen=True)
class Chunker:
    name: str
    size: int
    overlap: int
    min_chunk: int
    scope: str


CHUNKERS = (
    Chunker("sections 1000/150, merge < 300 siblings (shipped)", 1000, 150, 300, "siblings"),
    Chunker("sections packed to 1000, siblings", 1000, 150, 1000, "siblings"),
    Chunker("sections packed to 1000, page", 1000, 150, 1000, "page"),
    Chunker("sections 1000/150, merge < 500 page", 1000, 150, 500, "page"),
)


def chunk_corpus(corpus: Path, c: Chunker) -> list[Row]:
    from sotrag.retrieval.chunking import ChunkingConfig, split_documents

    cfg = ChunkingConfig(chunk_size=c.size, chunk_overlap=c.overlap, min_chunk=c.min_chunk,
                         merge_scope=c.scope)  # type: ignore[arg-type]
    rows: list[Row] = []
    for source, kind, docs, title in corpus_documents(corpus):
        rows.extend(Row(source, title, ch.heading, ch.text) for ch in split_documents(docs, kind, title, cfg))
    return rows


def embed_text(r: Row) -> str:
    """What the index embeds for a chunk: the shipped ``Chunk.embed_text`` itself."""
    from sotrag.retrieval.chunking import Chunk

    return Chunk(text=r.text, heading=r.heading, position=0).embed_text


QUERIES: dict[str, Callable[[str], str]] = {
    "question (shipped)": lambda q: q,
    "question words stripped": lambda q: _QUESTION_WORDS.sub("", q).strip() or q,
    "keywords only": keywords,
}


class ScoredLexical(Lexical):
    def scored(self, query: str, limit: int, weights: tuple[float, float, float] = (2.0, 3.0, 1.0)) -> list[
            tuple[int, float]]:
        from sotrag.retrieval.store import fts_query

        match = fts_query(query)
        if not match:
            return []
        w = ", ".join(str(x) for x in weights)
        sql = f"SELECT rowid, -bm25(f, {w}) FROM f WHERE f MATCH ? ORDER BY bm25(f, {w}) LIMIT ?"
        return [(int(r[0]), float(r[1])) for r in self.conn.execute(sql, [match, limit])]


Ranked = list[tuple[int, float]]


def rrf(dense: Ranked, lexical: Ranked, lw: float, k: int) -> Ranked:
    from sotrag.retrieval.fusion import reciprocal_rank_fusion

    return reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in lexical]], [1.0, lw], k)


def weighted(dense: Ranked, lexical: Ranked, alpha: float) -> Ranked:
    """Convex combination of min-max normalized scores (each list normalized over its own candidates)."""
    out: dict[int, float] = {}
    for ranked, w in ((dense, alpha), (lexical, 1.0 - alpha)):
        if not ranked:
            continue
        s = np.array([x for _, x in ranked])
        lo, span = s.min(), (s.max() - s.min()) or 1.0
        for (i, _), v in zip(ranked, (s - lo) / span, strict=True):
            out[i] = out.get(i, 0.0) + w * float(v)
    return sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))


def page_sum(ranked: Ranked, rows: Sequence[Row], beta: float) -> Ranked:
    """Each chunk's score plus ``beta`` times the scores of the other candidates from its page: a page that many
    candidates come from ranks above a neighbour page with one lucky chunk."""
    if beta == 0:
        return ranked
    total: dict[str, float] = {}
    for i, s in ranked:
        total[rows[i].source] = total.get(rows[i].source, 0.0) + s
    boosted = [(i, s + beta * (total[rows[i].source] - s)) for i, s in ranked]
    return sorted(boosted, key=lambda kv: (-kv[1], kv[0]))


def page_second(ranked: Ranked, rows: Sequence[Row], beta: float) -> Ranked:
    """The shipped page boost (``fusion.page_boost``): plus ``beta`` times the best other candidate of the page."""
    from sotrag.retrieval.fusion import page_boost as shipped_boost

    return shipped_boost(ranked, {i: rows[i].source for i, _ in ranked}, beta)


def page_text(title: str, headings: Sequence[str]) -> str:
    """A page as one short text: its title and its section headings (what the page is about)."""
    seen: dict[str, None] = {}
    for h in headings:
        last = h.split(" > ")[-1]
        if last and last != title:
            seen.setdefault(last, None)
    return f"{title}\n\n" + "\n".join(seen)


def page_ranked(dense: Ranked, lexical: Ranked, rows: Sequence[Row], page_sim: dict[str, float]) -> list[int]:
    """The fused candidates ordered by their page's similarity to the query (a third list for RRF)."""
    cand = dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical])
    return sorted(cand, key=lambda i: -page_sim[rows[i].source])


def _weighted_at(alpha: float) -> Callable[[Ranked, Ranked], Ranked]:
    return lambda d, x: weighted(d, x, alpha)


FUSIONS: dict[str, Callable[[Ranked, Ranked], Ranked]] = {
    "rrf lw=0.5 k=30 (shipped)": lambda d, x: rrf(d, x, 0.5, 30),
    "rrf lw=1.0 k=60": lambda d, x: rrf(d, x, 1.0, 60),
    **{f"weighted scores dense={a}": _weighted_at(a) for a in (0.5, 0.6, 0.7, 0.8)},
}
BETAS = (0.1, 0.25, 0.5)
BEFORE = "rrf lw=0.5 k=30 (shipped) | no page boost"
AFTER = "rrf lw=0.5 k=30 (shipped) | page boost beta=0.1"


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("../shared/data/corpus/fastapi-docs"))
    ap.add_argument("--questions", type=Path, default=Path(__file__).parent / "data" / "fastapi_dev.jsonl")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sotrag-retrieval-variants"))
    ap.add_argument("--chunkers", type=int, default=len(CHUNKERS), help="how many of CHUNKERS to embed (in order)")
    ap.add_argument("--fresh", action="store_true",
                    help="embed every chunking from scratch (its own cache file), so ingest seconds compare")
    ap.add_argument("--embedder", default="minilm",
                    help="minilm (the packaged default) or NAME=PATH, a sentence-transformers folder")
    ap.add_argument("--out", type=Path, default=RESULTS / "retrieval-levers.json")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from sotrag.retrieval.evaluation import load_questions
    from sotrag.retrieval.fusion import reciprocal_rank_fusion

    qs = load_questions(args.questions)
    halves = {h: [q for q in qs if split_half(q.question) == h] for h in ("tune", "test")}
    emb_name, _, emb_path = args.embedder.partition("=")
    cache = EmbedCache(emb_name, emb_path or None, args.cache)
    model = "all-MiniLM-L6-v2 (packaged)" if emb_name == "minilm" else emb_name
    result: dict[str, Any] = {"machine": machine(), "model": f"{model}, {cache.embedder.precision} autocast",
                              "split": {h: len(v) for h, v in halves.items()}, "chunkers": [], "grid": []}
    for n, ch in enumerate(CHUNKERS[: args.chunkers]):
        rows = chunk_corpus(args.corpus, ch)
        if args.fresh:
            cache = EmbedCache(f"{emb_name}-fresh{n}", emb_path or None, args.cache)
        s0, n0 = cache.seconds, cache.embedded
        t0 = time.perf_counter()
        matrix = cache([embed_text(r) for r in rows])
        result["chunkers"].append({
            "chunker": ch.name, "chunks": len(rows), "embedded_chars": sum(len(embed_text(r)) for r in rows),
            "newly_embedded": cache.embedded - n0, "embed_seconds_new": round(cache.seconds - s0, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1), "load_avg_1m": round(os.getloadavg()[0], 2)})
        lexical = ScoredLexical(rows)
        by_page: dict[str, list[Row]] = {}
        for r in rows:
            by_page.setdefault(r.source, []).append(r)
        pages = list(by_page)
        page_matrix = cache([page_text(v[0].title, [r.heading for r in v]) for v in by_page.values()])
        for qn, qf in QUERIES.items():
            per: dict[str, dict[str, dict[str, float]]] = {}
            for half, hq in halves.items():
                qv = cache.query([qf(q.question) for q in hq])
                sims = matrix @ qv.T
                dense = [[(int(i), float(sims[i, j])) for i in np.argsort(-sims[:, j])[:FETCH]] for j in range(len(hq))]
                lex = [lexical.scored(qf(q.question), FETCH) for q in hq]
                per[half] = {"dense": score([[i for i, _ in d] for d in dense], rows, hq),
                             "lexical": score([[i for i, _ in x] for x in lex], rows, hq)}
                for fname, fuse in FUSIONS.items():
                    fused = [fuse(d, x) for d, x in zip(dense, lex, strict=True)]
                    per[half][f"{fname} | no page boost"] = score([[i for i, _ in r] for r in fused], rows, hq)
                    for beta in BETAS:
                        ranked = [page_sum(f, rows, beta) for f in fused]
                        per[half][f"{fname} | page sum beta={beta}"] = score(
                            [[i for i, _ in r] for r in ranked], rows, hq)
                        ranked = [page_second(f, rows, beta) for f in fused]
                        per[half][f"{fname} | page boost beta={beta}"] = score(
                            [[i for i, _ in r] for r in ranked], rows, hq)
                psims = page_matrix @ qv.T
                for j_w in (0.25, 0.5, 1.0):
                    ranked_ids = []
                    for j, (d, x) in enumerate(zip(dense, lex, strict=True)):
                        sim = {src: float(psims[p, j]) for p, src in enumerate(pages)}
                        fused3 = reciprocal_rank_fusion(
                            [[i for i, _ in d], [i for i, _ in x], page_ranked(d, x, rows, sim)], [1.0, 0.5, j_w], 30)
                        ranked_ids.append([i for i, _ in fused3])
                    per[half][f"rrf + page-headings ranker w={j_w}"] = score(ranked_ids, rows, hq)
            result["grid"].append({"chunker": ch.name, "query": qn, "metrics": per})
            tn, ts = per["tune"], per["test"]
            best = max((m for m in tn if m not in ("dense", "lexical")), key=lambda m: tn[m]["ndcg@10"])
            print(f"{ch.name:52} | {qn:24} | before tune {tn[BEFORE]['ndcg@10']:.3f} test {ts[BEFORE]['ndcg@10']:.3f}"
                  f" | after tune {tn[AFTER]['ndcg@10']:.3f} test {ts[AFTER]['ndcg@10']:.3f} | best on tune "
                  f"{tn[best]['ndcg@10']:.3f} ({best}) test {ts[best]['ndcg@10']:.3f}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["chunkers"], indent=1))
    print(f"-> {args.out} (adopt margin {ADOPT_MARGIN})")


if __name__ == "__main__":
    main()
