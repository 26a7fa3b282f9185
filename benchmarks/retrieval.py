"""Retrieval benchmark: ingest throughput, embedding precision (speed and quality), and Flat vs HNSW search.

Usage (the corpus path is an argument; the suite never needs it)::

    python benchmarks/retrieval.py --corpus ../shared/data/corpus/fastapi-docs \\
        --questions benchmarks/data/fastapi_dev.jsonl --sizes 10000,100000,1000000

Parts (each can be skipped):

1. ``embed``: embedding speed of plain sentence-transformers fp32 vs sotrag's default (bf16 autocast where the
   CPU has it), interleaved rounds on the same chunk sample so machine load hits both alike; cosine to fp32.
2. ``ingest``: full ingest of the corpus with the default settings (chunks/s, embedding share of the time),
   then a re-ingest of the unchanged corpus and one with a single edited file (content-hash cache).
3. ``quality``: eval-retrieval metrics (dense/lexical/hybrid) on the index from part 2, and on an fp32 index
   built the same way, so the precision change is judged by nDCG@10, not only by cosine.
4. ``faiss``: query latency p50/p99 (one query at a time, as the server does) of exact Flat vs HNSW on
   synthetic clustered unit vectors at each size, with HNSW recall@10 against Flat, and build times.

Results: a table on stdout and ``benchmarks/results/retrieval-<part>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
QUESTIONS = Path(__file__).parent / "data" / "fastapi_dev.jsonl"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host import machine  # noqa: E402  (the CPU, threads and versions of a retrieval run)


def save(part: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"retrieval-{part}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    print(f"  -> {path}")


def corpus_chunks(corpus: Path) -> list[str]:
    """The embed texts of the corpus, chunked exactly as an ingest would."""
    from sotrag.retrieval.chunking import ChunkingConfig, document_title, split_documents
    from sotrag.retrieval.loaders import discover, file_kind, load_file

    texts: list[str] = []
    for f in discover([corpus]):
        kind = file_kind(f.path)
        if kind is None:
            continue
        data = f.path.read_bytes()
        docs = load_file(f.path, data)
        title = document_title(docs, kind, f.path.stem)
        texts.extend(c.embed_text for c in split_documents(docs, kind, title, ChunkingConfig()))
    return texts


def bench_embed(corpus: Path, sample: int, rounds: int) -> dict[str, Any]:
    import torch

    from sotrag.retrieval.embedder import Embedder, load_sentence_transformer

    texts = corpus_chunks(corpus)
    rng = np.random.default_rng(0)
    pick = [texts[i] for i in rng.choice(len(texts), size=min(sample, len(texts)), replace=False)]
    plain = load_sentence_transformer()
    fast = Embedder(precision="auto")
    print(
        f"[embed] {len(pick)} of {len(texts)} chunks, {rounds} interleaved rounds; default precision = {fast.precision}"
    )

    def plain_encode() -> np.ndarray:  # what a user gets from sentence-transformers out of the box
        return plain.encode(pick, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    plain_encode()  # warm-up both
    fast.embed(pick[:64])
    times: dict[str, list[float]] = {"fp32_sentence_transformers": [], "sotrag_default": []}
    ref = out = None
    for _ in range(rounds):
        t = time.perf_counter()
        ref = plain_encode()
        times["fp32_sentence_transformers"].append(time.perf_counter() - t)
        t = time.perf_counter()
        out = fast.embed(pick)
        times["sotrag_default"].append(time.perf_counter() - t)
    assert ref is not None and out is not None
    cos = np.sum(ref * out, axis=1)
    res: dict[str, Any] = {
        "chunks": len(pick),
        "rounds": rounds,
        "default_precision": fast.precision,
        "chunks_per_s": {k: round(len(pick) / statistics.median(v), 2) for k, v in times.items()},
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "cosine_to_fp32": {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)},
        "torch_threads": torch.get_num_threads(),
    }
    res["speedup"] = round(res["chunks_per_s"]["sotrag_default"] / res["chunks_per_s"]["fp32_sentence_transformers"], 2)
    # Query embedding latency (one query at a time, as search does), fp32 vs bf16, on the dev questions.
    qs = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    lat: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for q in qs[:5]:
        fast._encode([q], "fp32")
        fast._encode([q], "bf16")
    for q in qs:
        for p in ("fp32", "bf16"):
            t = time.perf_counter()
            fast._encode([q], p)
            lat[p].append((time.perf_counter() - t) * 1000)
    res["query_embed_ms_p50"] = {p: round(float(np.percentile(v, 50)), 2) for p, v in lat.items()}
    res["query_embed_ms_p99"] = {p: round(float(np.percentile(v, 99)), 2) for p, v in lat.items()}
    print(f"  query embedding p50 ms: {res['query_embed_ms_p50']}, p99 ms: {res['query_embed_ms_p99']}")
    for k, v in res["chunks_per_s"].items():
        print(f"  {k:28} {v:8.2f} chunks/s")
    print(f"  speed-up {res['speedup']}x, cosine to fp32 min {res['cosine_to_fp32']['min']}")
    return res


def bench_ingest(corpus: Path, workdir: Path, precision: str) -> dict[str, Any]:
    from sotrag.retrieval.index import DocumentIndex

    copy = workdir / f"corpus-{precision}"
    shutil.copytree(corpus, copy)
    index_dir = workdir / f"index-{precision}"
    idx = DocumentIndex.open(index_dir, create=True, precision=precision)
    first = idx.ingest([copy])
    n = first.chunks_written
    res: dict[str, Any] = {
        "precision": idx.embedder.precision,
        "files": len(first.files),
        "chunks": n,
        "seconds": first.total_seconds,
        "embed_seconds": first.embed_seconds,
        "chunks_per_s": round(n / first.total_seconds, 2),
        "embedding_share": round(first.embed_seconds / first.total_seconds, 3),
    }
    again = idx.ingest([copy])
    res["reingest_unchanged_seconds"] = again.total_seconds
    edited = copy / "tutorial" / "query-params.md"
    if edited.exists():
        edited.write_text(edited.read_text().replace("## Defaults", "## Default values", 1))
        third = idx.ingest([copy])
        res["reingest_one_edited_file"] = {
            "seconds": third.total_seconds,
            "chunks_embedded": third.chunks_embedded,
            "chunks_from_cache": third.chunks_cached,
        }
    res["index_dir"] = str(index_dir)
    idx.close()
    print(
        f"[ingest {precision}] {n} chunks in {res['seconds']}s = {res['chunks_per_s']} chunks/s "
        f"(embedding {res['embedding_share']:.0%}); unchanged re-ingest {res['reingest_unchanged_seconds']}s"
    )
    return res


def bench_quality(index_dirs: dict[str, str], questions: Path) -> dict[str, Any]:
    from sotrag.retrieval.evaluation import evaluate, load_questions
    from sotrag.retrieval.index import DocumentIndex

    qs = load_questions(questions)
    out: dict[str, Any] = {"questions": len(qs)}
    for label, d in index_dirs.items():
        idx = DocumentIndex.open(d)
        out[label] = {m: evaluate(idx, qs, m)["mean"] for m in ("dense", "lexical", "hybrid")}
        idx.close()
        for m, r in out[label].items():
            print(f"[quality {label}] {m:8} " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))
    return out


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Unit vectors around random cluster centres: closer to real embeddings than uniform noise."""
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        c = centers[rng.integers(0, len(centers), size=m)]
        x = c + rng.normal(scale=0.08, size=(m, dim)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bench_faiss(sizes: list[int], dim: int, queries: int) -> dict[str, Any]:
    import faiss

    from sotrag.retrieval import vectors

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(max(1000, max(sizes) // 1000), dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    results = []
    for n in sizes:
        data = clustered_vectors(n, dim, rng, centers)
        q = clustered_vectors(queries, dim, rng, centers)
        ids = np.arange(n, dtype=np.int64)
        row: dict[str, Any] = {"n": n, "dim": dim, "queries": queries}
        found: dict[str, list[list[int]]] = {}
        for kind in ("flat", "hnsw"):
            t = time.perf_counter()
            index = vectors.build(kind, dim, ids, data)
            build_s = time.perf_counter() - t
            lat = []
            hits = []
            for i in range(queries):
                t = time.perf_counter()
                res = vectors.search(index, q[i], 10)
                lat.append((time.perf_counter() - t) * 1000)
                hits.append([vid for vid, _ in res])
            found[kind] = hits
            row[kind] = {
                "build_s": round(build_s, 2),
                "p50_ms": round(float(np.percentile(lat, 50)), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3),
            }
            del index
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found["hnsw"], found["flat"], strict=True)])
        row["hnsw"]["recall@10_vs_flat"] = round(float(recall), 4)
        row["hnsw"].update(
            {
                "M": vectors.HNSW_M,
                "efConstruction": vectors.HNSW_EF_CONSTRUCTION,
                "efSearch": vectors.HNSW_EF_SEARCH,
            }
        )
        results.append(row)
        save("faiss", {"rows": results, "complete": n == sizes[-1]})  # partial results survive a long 1M run
        print(
            f"[faiss n={n:>8}] flat p50 {row['flat']['p50_ms']:.2f} ms p99 {row['flat']['p99_ms']:.2f} ms | "
            f"hnsw p50 {row['hnsw']['p50_ms']:.2f} ms p99 {row['hnsw']['p99_ms']:.2f} ms "
            f"recall@10 {recall:.3f} (build {row['hnsw']['build_s']}s vs flat {row['flat']['build_s']}s)"
        )
        del data
    print(f"  faiss threads: {faiss.omp_get_max_threads()}")
    return {"rows": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("../shared/data/corpus/fastapi-docs"))
    ap.add_argument("--questions", type=Path, default=Path(__file__).parent / "data" / "fastapi_dev.jsonl")
    ap.add_argument("--parts", default="embed,ingest,quality,faiss")
    ap.add_argument("--sample", type=int, default=300, help="chunks in the embedding speed comparison")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the built indexes here")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print("machine:", json.dumps(machine()))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sotrag-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if "embed" in parts:
        save("embed", bench_embed(args.corpus, args.sample, args.rounds))
    if "ingest" in parts or "quality" in parts:
        ingests = {p: bench_ingest(args.corpus, workdir, p) for p in ("auto", "fp32")}
        save("ingest", {"ingests": ingests})
        if "quality" in parts:
            q = bench_quality({p: r["index_dir"] for p, r in ingests.items()}, args.questions)
            d = round(q["auto"]["hybrid"]["ndcg@10"] - q["fp32"]["hybrid"]["ndcg@10"], 4)
            q["ndcg@10_default_minus_fp32"] = {
                m: round(q["auto"][m]["ndcg@10"] - q["fp32"][m]["ndcg@10"], 4) for m in ("dense", "lexical", "hybrid")
            }
            print(f"[quality] hybrid nDCG@10 default - fp32 = {d:+.4f}")
            save("quality", q)
    if "faiss" in parts:
        bench_faiss([int(s) for s in args.sizes.split(",")], 384, args.queries)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
