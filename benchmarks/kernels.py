"""Fused similarity top-k against torch and FAISS, on the lent GPU (docs/BENCHMARKS.md, kernels section).

    python benchmarks/kernels.py --out benchmarks/results/kernels_h200.json

Measures first the ceilings (device-to-device copy, counting bytes read plus written, and a read-only
``sum``), then for each corpus size N, dimension d and query count nq: the fused kernel (fp16 rows and int8
rows with per-row scales; the default tile config and a few alternatives), ``torch.topk(q @ X.T, k)`` in
fp16, and faiss-cpu ``IndexFlatIP`` on the machine's own cores. ``IndexHNSWFlat`` (sotrag's parameters) is
built only at ``--hnsw-n`` rows: its build time grows with N far past a device call. GPU times are medians
of CUDA-event timings (``triton.testing.do_bench``); FAISS times are wall-clock medians. Achieved GB/s counts
the corpus bytes each search must read. Recall@k is against exact fp32 search of the fp32 corpus that the
fp16 and int8 copies were made from. Results are written after every step, so a cut-off run keeps its part.

On CPU (``TRITON_INTERPRET=1``, tiny sizes: ``--sizes 2000 --dims 64``) it only proves the harness.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sotrag.kernels.reference import rerank
from sotrag.kernels.similarity_topk import TileConfig, default_config, quantize_int8, similarity_topk

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
# Alternatives to the default tile config, swept at every shape: (block_n, block_d, num_warps, num_stages).
SWEEP_FEW = [(256, 64, 8, 3), (128, 128, 4, 3)]
SWEEP_MANY = [(128, 64, 8, 2), (128, 128, 4, 3)]


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(s[-1], 1)
    return int(float(s[:-1]) * mult) if s[-1] in "KM" else int(s)


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        return f"unavailable: {exc}"


def environment() -> dict[str, Any]:
    import triton

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cpu_model": sh("lscpu | grep -m1 'Model name' | cut -d: -f2").strip(),
        "cpu_cores": os.cpu_count(),
    }
    try:
        import faiss

        env["faiss"] = faiss.__version__
        env["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        env["faiss"] = None
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["sm_count"] = p.multi_processor_count
        env["nvidia_smi"] = sh(
            "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,"
            "power.limit --format=csv,noheader"
        )
        env["cuda"] = torch.version.cuda
    return env


def time_ms(fn: Callable[[], object], runs: int) -> tuple[float, int]:
    """Median ms over about ``runs`` runs: CUDA events through do_bench on a GPU, perf_counter on CPU."""
    fn()
    if CUDA:
        import triton.testing

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        est = (time.perf_counter() - t0) / 3 * 1e3
        rep = max(runs * est, 20.0)
        ms = triton.testing.do_bench(fn, warmup=max(5 * est, 5.0), rep=rep, return_mode="median")
        return float(ms), max(1, int(rep / max(est, 1e-3)))
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), runs


def ceilings(runs: int, gib: float) -> dict[str, float]:
    n = int(gib * 2**30) // 2
    a = torch.randn(n, device=DEV, dtype=torch.float16)
    b = torch.empty_like(a)
    copy_ms, _ = time_ms(lambda: b.copy_(a), runs)
    read_ms, _ = time_ms(lambda: a.sum(dtype=torch.float32), runs)
    nbytes = a.numel() * 2
    return {
        "buffer_gib": gib,
        "copy_ms": copy_ms,
        "copy_gbps": 2 * nbytes / copy_ms / 1e6,  # read + write
        "read_ms": read_ms,
        "read_gbps": nbytes / read_ms / 1e6,
    }


def make_corpus(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalized Gaussian rows in fp32, and the fp16 and int8(+scales) copies the searches read."""
    g = torch.Generator(device=DEV).manual_seed(seed)
    x32 = torch.randn(n, d, device=DEV, generator=g)
    x32 /= x32.norm(dim=1, keepdim=True)
    xh = x32.half()
    xi = torch.empty((n, d), dtype=torch.int8, device=DEV)
    scales = torch.empty(n, dtype=torch.float32, device=DEV)
    step = 1 << 20
    for i in range(0, n, step):
        xi[i : i + step], scales[i : i + step] = quantize_int8(x32[i : i + step])
    return x32, xh, xi, scales


def exact_topk(q32: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """Exact fp32 top-k indices, in chunks (no TF32)."""
    best_s = torch.full((q32.shape[0], 0), float("-inf"), device=q32.device)
    best_i = torch.zeros((q32.shape[0], 0), dtype=torch.int64, device=q32.device)
    step = 1 << 20
    for i in range(0, x.shape[0], step):
        s = q32 @ x[i : i + step].float().T
        v, j = torch.topk(s, min(k, s.shape[1]), dim=1)
        best_s, pos = torch.topk(torch.cat([best_s, v], 1), min(k, best_s.shape[1] + v.shape[1]), dim=1)
        best_i = torch.cat([best_i, j + i], 1).gather(1, pos)
    return best_i


def recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.numel()


def gpu_shape(n: int, d: int, nqs: list[int], k: int, runs: int, sweep: bool, seed: int) -> list[dict[str, Any]]:
    x32, xh, xi, scales = make_corpus(n, d, seed)
    g = torch.Generator(device=DEV).manual_seed(seed + 1)
    qpool = torch.randn(max(nqs), d, device=DEV, generator=g)
    qpool /= qpool.norm(dim=1, keepdim=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    truth = exact_topk(qpool, x32, k)
    truth16 = exact_topk(qpool.half().float(), xh, k)  # exact fp32 scoring of the same fp16 rows
    x32_rerank = x32  # the full-precision rows an int8 search re-ranks its over-fetched candidates with
    bytes16, bytes8 = n * d * 2, n * (d + 4)
    rows: list[dict[str, Any]] = []
    for nq in nqs:
        q = qpool[:nq].half().contiguous()
        out: dict[str, Any] = {"N": n, "d": d, "nq": nq, "k": k}

        def torch_topk(q: torch.Tensor = q) -> object:
            return torch.topk(q @ xh.T, k, dim=1)

        out["torch_ms"], out["runs"] = time_ms(torch_topk, runs)
        ti = torch_topk()[1]  # type: ignore[index]
        out["torch_recall"] = recall(ti, truth[:nq])

        variants: list[tuple[str, torch.Tensor, torch.Tensor | None, int, dict[str, Any]]] = [
            ("fp16", xh, None, bytes16, {}),
            ("fp16_prefilter", xh, None, bytes16, {"prefilter": True}),
            ("int8", xi, scales, bytes8, {}),
            ("int8q", xi, scales, bytes8, {"int8_queries": True}),
            ("int8q_rerank", xi, scales, bytes8, {"int8_queries": True, "rerank": 4, "prefilter": True}),
        ]
        for kind, corpus, sc, nbytes, opts in variants:
            cfg = default_config(nq, d, k, sc is not None)
            over = int(opts.get("rerank", 0))
            kw = {key: v for key, v in opts.items() if key != "rerank"}

            def run(
                c: TileConfig | None = None,
                corpus: torch.Tensor = corpus,
                sc: torch.Tensor | None = sc,
                q: torch.Tensor = q,
                kw: dict[str, Any] = kw,
                over: int = over,
            ) -> Any:
                if not over:
                    return similarity_topk(q, corpus, k, sc, config=c, **kw)
                _, cand = similarity_topk(q, corpus, over * k, sc, config=c, **kw)
                return rerank(q, x32_rerank, cand, k)  # exact fp32 scores of the over-fetched rows

            ms, _ = time_ms(run, runs)
            _, idx = run()
            out[f"{kind}_ms"] = ms
            out[f"{kind}_gbps"] = nbytes / ms / 1e6
            out[f"{kind}_config"] = {**cfg.__dict__, **opts}
            out[f"{kind}_recall"] = recall(idx, truth[:nq])
            if kind == "fp16":
                out["fp16_equal_to_fp32_scoring_of_fp16_rows"] = recall(idx, truth16[:nq])
            if sweep and kind in ("fp16", "int8q"):
                best = (ms, cfg.__dict__)
                tried = []
                for bn, bd, nw, ns in SWEEP_FEW if nq <= 16 else SWEEP_MANY:
                    c = TileConfig(block_n=bn, block_d=bd, num_warps=nw, num_stages=ns)
                    if c == cfg:
                        continue
                    try:
                        t, _ = time_ms(functools.partial(run, c), max(10, runs // 2))
                    except Exception as exc:  # a config the compiler refuses (e.g. shared memory)
                        tried.append({**c.__dict__, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
                        continue
                    tried.append({**c.__dict__, "ms": t})
                    if t < best[0]:
                        best = (t, c.__dict__)
                out[f"{kind}_sweep"] = tried
                out[f"{kind}_best_ms"], out[f"{kind}_best_config"] = best
        out["fp16_speedup_vs_torch"] = out["torch_ms"] / out["fp16_ms"]
        out["int8_speedup_vs_fp16"] = out["fp16_ms"] / out["int8_ms"]
        out["int8q_speedup_vs_fp16"] = out["fp16_ms"] / out["int8q_ms"]
        out["int8q_rerank_speedup_vs_fp16"] = out["fp16_ms"] / out["int8q_rerank_ms"]
        rows.append(out)
        print(
            f"N={n:>9} d={d} nq={nq:>2}  torch {out['torch_ms']:.3f} ms  fp16 {out['fp16_ms']:.3f} ms "
            f"({out['fp16_gbps']:.0f} GB/s)  int8 {out['int8_ms']:.3f} ms ({out['int8_gbps']:.0f} GB/s)  "
            f"int8q {out['int8q_ms']:.3f} ms, +rerank {out['int8q_rerank_ms']:.3f} ms  "
            f"recall fp16 {out['fp16_recall']:.4f} int8 {out['int8_recall']:.4f} int8q {out['int8q_recall']:.4f} "
            f"int8q+rerank {out['int8q_rerank_recall']:.4f}",
            flush=True,
        )
    return rows


def faiss_shape(n: int, d: int, nqs: list[int], k: int, seed: int, hnsw: bool, deadline: float) -> dict[str, Any]:
    """faiss-cpu on this machine's cores over the same fp32 corpus (copied to host in chunks)."""
    import faiss
    import numpy as np

    x32, _, _, _ = make_corpus(n, d, seed)
    g = torch.Generator(device=DEV).manual_seed(seed + 1)
    qpool = torch.randn(max(nqs), d, device=DEV, generator=g)
    qpool /= qpool.norm(dim=1, keepdim=True)
    qnp = qpool.cpu().numpy()
    res: dict[str, Any] = {"N": n, "d": d, "threads": faiss.omp_get_max_threads()}
    flat = faiss.IndexFlatIP(d)
    step = 1 << 20
    t0 = time.perf_counter()
    for i in range(0, n, step):
        flat.add(np.ascontiguousarray(x32[i : i + step].cpu().numpy()))
    res["flat_add_s"] = time.perf_counter() - t0
    truth = None
    runs = 5 if n <= 2_000_000 else 3
    for nq in nqs:
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            _, ids = flat.search(qnp[:nq], k)
            ts.append((time.perf_counter() - t0) * 1e3)
        res[f"flat_nq{nq}_ms"] = statistics.median(ts)
        if nq == max(nqs):
            truth = ids
        print(f"faiss flat N={n} d={d} nq={nq}: {res[f'flat_nq{nq}_ms']:.1f} ms", flush=True)
    del flat
    if hnsw and time.perf_counter() < deadline:
        from sotrag.retrieval import vectors

        h = faiss.IndexHNSWFlat(d, vectors.HNSW_M, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = vectors.HNSW_EF_CONSTRUCTION
        h.hnsw.efSearch = vectors.HNSW_EF_SEARCH
        t0 = time.perf_counter()
        for i in range(0, n, step):
            h.add(np.ascontiguousarray(x32[i : i + step].cpu().numpy()))
        res["hnsw_build_s"] = time.perf_counter() - t0
        res["hnsw_params"] = {
            "M": vectors.HNSW_M,
            "efConstruction": vectors.HNSW_EF_CONSTRUCTION,
            "efSearch": vectors.HNSW_EF_SEARCH,
        }
        for nq in nqs:
            ts = []
            for _ in range(runs * 4):
                t0 = time.perf_counter()
                _, ids = h.search(qnp[:nq], k)
                ts.append((time.perf_counter() - t0) * 1e3)
            res[f"hnsw_nq{nq}_ms"] = statistics.median(ts)
        if truth is not None:
            _, ids = h.search(qnp, k)
            res["hnsw_recall"] = recall(torch.from_numpy(ids), torch.from_numpy(truth))
        print(
            f"faiss hnsw N={n} d={d}: build {res['hnsw_build_s']:.1f} s, "
            f"{[round(res[f'hnsw_nq{q}_ms'], 2) for q in nqs]} ms, recall {res.get('hnsw_recall')}",
            flush=True,
        )
    del x32
    if CUDA:
        torch.cuda.empty_cache()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kernels_h200.json"))
    ap.add_argument("--sizes", default="1M,10M")
    ap.add_argument("--dims", default="384,768")
    ap.add_argument("--nq", default="1,8,64")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--ceiling-gib", type=float, default=2.0)
    ap.add_argument("--no-sweep", action="store_true", help="time only the default tile config")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--hnsw-n", default="100K", help="corpus size at which IndexHNSWFlat is built (0: none)")
    ap.add_argument("--faiss-budget-s", type=float, default=240.0, help="skip HNSW builds after this long")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sizes, dims = [parse_size(s) for s in a.sizes.split(",")], [int(x) for x in a.dims.split(",")]
    nqs = [int(x) for x in a.nq.split(",")]
    result: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "k": a.k}
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    result["environment"] = environment()
    print(json.dumps(result["environment"]), flush=True)
    result["ceilings"] = ceilings(a.runs, a.ceiling_gib)
    print("ceilings:", json.dumps(result["ceilings"]), flush=True)
    save()
    result["gpu"] = []
    for n in sizes:
        for d in dims:
            result["gpu"].extend(gpu_shape(n, d, nqs, a.k, a.runs, not a.no_sweep, a.seed))
            save()
    if not a.no_faiss:
        result["faiss"] = []
        hnsw_n = parse_size(a.hnsw_n)
        deadline = time.perf_counter() + a.faiss_budget_s
        for n in sorted({*sizes, hnsw_n} - {0}):
            for d in dims:
                result["faiss"].append(faiss_shape(n, d, nqs, a.k, a.seed, hnsw=n == hnsw_n, deadline=deadline))
                save()
    print_tables(result)
    return 0


def print_tables(result: dict[str, Any]) -> None:
    c = result["ceilings"]
    bw = max(c["copy_gbps"], c["read_gbps"])
    print(f"\ncopy {c['copy_gbps']:.0f} GB/s (read+write), read {c['read_gbps']:.0f} GB/s; % of {bw:.0f}")
    print("| N | d | nq | torch ms | fp16 ms (GB/s, %) | fp16/torch | int8 ms | int8q ms | int8q+rr ms | recall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in result["gpu"]:
        print(
            f"| {r['N']} | {r['d']} | {r['nq']} | {r['torch_ms']:.3f} | {r['fp16_ms']:.3f} ({r['fp16_gbps']:.0f}, "
            f"{100 * r['fp16_gbps'] / bw:.0f}%) | {r['fp16_speedup_vs_torch']:.2f}x | {r['int8_ms']:.3f} | "
            f"{r['int8q_ms']:.3f} | {r['int8q_rerank_ms']:.3f} | "
            f"{r['fp16_recall']:.4f}/{r['int8q_rerank_recall']:.4f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
