"""Fused inner-product top-k: score queries against a corpus and keep only the k best, in one pass.

``torch.topk(q @ X.T, k)`` writes the whole ``nq x N`` score matrix to device memory and reads it back.
Here each program scores one tile of ``BLOCK_N`` corpus rows against a block of queries on the tensor
cores, keeps the tile's top ``k`` per query in registers, and writes only those (a partial top-k per
block); a small merge (``torch.topk`` over ``nq x n_tiles*k`` candidates) then picks the final ``k``.

Order is defined: higher score first, and for equal scores the lower corpus index first. Both stages
compare one int64 key per candidate, ``orderable(score) << 32 | (2**31 - 1 - index)``, so no two
candidates tie and every step agrees on the order.

Two corpus formats: fp16/bf16 rows, and int8 rows with one fp32 scale per row (:func:`quantize_int8`),
which halves the bytes read. Laid out like the Triton tutorials: kernel, launcher, then the plain PyTorch
reference that the tests (``tests/test_kernels.py``) and the benchmark (``benchmarks/kernels.py``) use.

On CPU tensors the kernel runs in Triton's interpreter (slow; for tests), which Triton only offers when
``TRITON_INTERPRET=1`` was set before it was first imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sotrag.kernels.reference import MAX_K, check_inputs, quantize_int8, similarity_topk_reference

__all__ = ["MAX_K", "TileConfig", "default_config", "quantize_int8", "similarity_topk", "similarity_topk_reference"]

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"  # read by triton at import, as here


@triton.jit
def _topk_tile_kernel(
    Q,  # [nq, D] queries, fp16/bf16 (int8 when QDOT)
    X,  # [N, D] corpus rows, fp16/bf16, or int8 when HAS_SCALE
    S,  # [N] fp32 row scales (int8 corpus only; any pointer otherwise)
    QS,  # [nq] fp32 query scales (QDOT only)
    T,  # [nq] int64 key floors (USE_T only): keys below can not be in the top k
    Out,  # [nq, n_tiles * K_SEL] int64 candidate keys
    nq,
    N,
    D,
    stride_q,
    stride_x,
    out_stride,
    HAS_SCALE: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    K_SEL: tl.constexpr,
    K_PAD: tl.constexpr,  # next power of two >= K_SEL
    UPCAST: tl.constexpr,  # interpreter only: its bf16 dot is wrong (Triton 3.9), so dot in fp32 there
    QDOT: tl.constexpr,  # int8 rows x int8 queries on the int8 tensor cores, int32 sums
    USE_T: tl.constexpr,
):
    """One tile of BLOCK_N rows x one block of BLOCK_Q queries -> the tile's K_SEL best keys per query."""
    pid_n = tl.program_id(0)
    pid_q = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    row_ok = rows < N
    q_ok = qs < nq
    x_off = rows.to(tl.int64)[:, None] * stride_x  # N * d passes 2**31 on large corpora
    acc = tl.zeros([BLOCK_N, BLOCK_Q], dtype=tl.int32 if QDOT else tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        d_ok = ds < D
        x = tl.load(X + x_off + ds[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0)
        q = tl.load(Q + qs[None, :] * stride_q + ds[:, None], mask=q_ok[None, :] & d_ok[:, None], other=0)
        if HAS_SCALE and not QDOT:
            x = x.to(q.dtype)  # int8 values are exact in fp16/bf16
        if UPCAST:  # a constexpr branch: only one side is compiled
            acc = tl.dot(x.to(tl.float32), q.to(tl.float32), acc)
        else:
            acc = tl.dot(x, q, acc, out_dtype=tl.int32 if QDOT else tl.float32)
    if QDOT:
        acc = acc.to(tl.float32) * tl.load(QS + qs, mask=q_ok, other=0.0)[None, :]
    if HAS_SCALE:
        acc = acc * tl.load(S + rows, mask=row_ok, other=0.0)[:, None]
    acc = acc + 0.0  # -0.0 -> +0.0, so equal scores give equal keys
    acc = tl.where(row_ok[:, None], acc, float("-inf"))
    bits = acc.to(tl.int32, bitcast=True)
    orderable = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # signed-int order == float order
    keys = (orderable.to(tl.int64) << 32) + (0x7FFFFFFF - rows).to(tl.int64)[:, None]
    out = Out + qs.to(tl.int64) * out_stride + pid_n * K_SEL
    gone = -9223372036854775807 - 1
    if USE_T:
        keys = tl.where(keys >= tl.load(T + qs, mask=q_ok, other=gone)[None, :], keys, gone)
    if K_SEL == BLOCK_N:  # k covers the whole tile: every row is a candidate
        tl.store(out[None, :] + tl.arange(0, BLOCK_N)[:, None], keys, mask=q_ok[None, :])
    elif USE_T:
        # Take the best key of each query column K_SEL times; stop early once no column has any left
        # (with key floors, most tiles hold nothing that can still make the top k), then pad with `gone`.
        best = tl.max(keys, axis=0)
        i = 0
        while (i < K_SEL) & (tl.max(best, axis=0) > gone):
            tl.store(out + i, best, mask=q_ok)
            keys = tl.where(keys == best[None, :], gone, keys)
            best = tl.max(keys, axis=0)
            i += 1
        slots = tl.arange(0, K_PAD)
        pad = (slots[:, None] >= i) & (slots[:, None] < K_SEL) & q_ok[None, :]
        tl.store(out[None, :] + slots[:, None], tl.full([K_PAD, BLOCK_Q], gone, tl.int64), mask=pad)
    else:  # the best key of each query column, K_SEL times
        for i in range(K_SEL):
            best = tl.max(keys, axis=0)
            tl.store(out + i, best, mask=q_ok)
            keys = tl.where(keys == best[None, :], gone, keys)


@triton.jit
def _merge_kernel(
    In,  # [nq, n_in] int64 candidate keys
    Out,  # [nq, n_chunks * K] int64 keys (not FINAL)
    Scores,  # [nq, K] fp32 (FINAL)
    Idx,  # [nq, K] int64 (FINAL)
    n_in,
    in_stride,
    out_stride,
    K: tl.constexpr,
    BLOCK: tl.constexpr,
    FINAL: tl.constexpr,
):
    """One chunk of BLOCK candidates of one query -> its K best keys, in order; FINAL decodes them."""
    pid_c = tl.program_id(0)
    q = tl.program_id(1).to(tl.int64)
    offs = pid_c * BLOCK + tl.arange(0, BLOCK)
    gone = -9223372036854775807 - 1
    keys = tl.load(In + q * in_stride + offs, mask=offs < n_in, other=gone)
    for i in range(K):
        best = tl.max(keys, axis=0)
        if FINAL:
            hi = (best >> 32).to(tl.int32)
            bits = hi ^ ((hi >> 31) & 0x7FFFFFFF)
            tl.store(Scores + q * K + i, bits.to(tl.float32, bitcast=True))
            tl.store(Idx + q * K + i, 0x7FFFFFFF - (best & 0xFFFFFFFF))
        else:
            tl.store(Out + q * out_stride + pid_c * K + i, best)
        keys = tl.where(keys == best, gone, keys)


@dataclass(frozen=True)
class TileConfig:
    """Launch shape. Chosen by :func:`default_config`; the benchmark sweeps alternatives."""

    block_n: int = 128
    block_d: int = 64
    num_warps: int = 4
    num_stages: int = 3
    merge_block: int = 4096  # candidates per merge program; must exceed k


def default_config(nq: int, d: int, k: int, int8: bool) -> TileConfig:
    """Tiles of 128 rows for small k (at most 1/12 of the scores survive as candidates), larger tiles for
    larger k so that at most a quarter do; 4 warps and 3 pipeline stages: the fastest of the swept configs at
    almost every shape, for 1 to 64 queries (benchmarks/kernels.py; docs/archive/benchmarks-history.md, issue 14)."""
    block_n = min(512, max(128, _next_pow2(4 * k)))
    return TileConfig(block_n=block_n, block_d=64, num_warps=8 if block_n > 128 else 4, num_stages=3)


def _empty(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer the kernels write (the tests replace this to poison them)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def similarity_topk(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    k: int,
    scales: torch.Tensor | None = None,
    config: TileConfig | None = None,
    *,
    int8_queries: bool = False,
    prefilter: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` inner products of each query against the corpus: ``(scores [nq,k] fp32, indices [nq,k] int64)``.

    ``corpus`` is fp16/bf16 ``[N, d]``, or int8 ``[N, d]`` with ``scales`` (fp32 ``[N]``, row i scores
    ``scales[i] * (q . corpus[i])``). Queries are cast to the corpus's float type (fp16 for int8), or with
    ``int8_queries`` quantized per query to int8 so the dot runs on the int8 tensor cores (approximate).
    Rows sorted by score, ties by lower index. CUDA tensors run the compiled kernel, CPU tensors the
    Triton interpreter.

    ``prefilter`` first finds the exact top-k of a leading slice (1/32) of the corpus; its k-th key per query
    is a floor that no key below can beat, so the main pass drops those and most tiles end their selection
    after one step. Exact either way (tested on a GPU). Its extra pass pays off only when many queries share a
    tile (timed at 1M rows: faster at 64 queries, slower at 1-8; docs/BENCHMARKS.md), so it is off by default.
    """
    check_inputs(queries, corpus, k, scales)
    if int8_queries and scales is None:
        raise ValueError("int8_queries needs an int8 corpus with scales")
    nq, d = queries.shape
    n = corpus.shape[0]
    int8 = scales is not None
    if corpus.device.type != "cuda" and not INTERPRETED:
        raise ValueError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported")
    if int8_queries:
        q, q_scales = quantize_int8(queries)
    else:
        q, q_scales = queries.to(torch.float16 if int8 else corpus.dtype).contiguous(), None
    cfg = config or default_config(nq, d, k, int8)
    floors = None
    if prefilter:
        n_sample = min(n, max(cfg.block_n * 4, -(-(n // 32) // cfg.block_n) * cfg.block_n))
        if n_sample < n and k <= n_sample:
            s_rows = scales[:n_sample] if scales is not None else None
            s_scores, s_idx = _search(q, q_scales, corpus[:n_sample], k, s_rows, cfg, None)
            floors = _keys(s_scores[:, -1], s_idx[:, -1]).contiguous()
    return _search(q, q_scales, corpus, k, scales, cfg, floors)


def _keys(scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The kernel's int64 key of (score, index): orderable(score) << 32 | (2**31 - 1 - index)."""
    bits = scores.contiguous().view(torch.int32)
    orderable = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (orderable.to(torch.int64) << 32) + (0x7FFFFFFF - idx)


def _search(
    q: torch.Tensor,
    q_scales: torch.Tensor | None,
    corpus: torch.Tensor,
    k: int,
    scales: torch.Tensor | None,
    cfg: TileConfig,
    floors: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    nq, d = q.shape
    n = corpus.shape[0]
    int8 = scales is not None
    block_q = min(64, max(16, _next_pow2(nq)))
    k_sel = min(k, cfg.block_n)
    n_tiles = (n + cfg.block_n - 1) // cfg.block_n
    cand = _empty((nq, n_tiles * k_sel), torch.int64, corpus.device)
    grid = (n_tiles, (nq + block_q - 1) // block_q)
    _topk_tile_kernel[grid](
        q,
        corpus,
        scales if int8 else q,
        q_scales if q_scales is not None else q,
        floors if floors is not None else cand,
        cand,
        nq,
        n,
        d,
        q.stride(0),
        corpus.stride(0),
        cand.stride(0),
        HAS_SCALE=int8,
        BLOCK_Q=block_q,
        BLOCK_N=cfg.block_n,
        BLOCK_D=cfg.block_d,
        K_SEL=k_sel,
        K_PAD=max(2, _next_pow2(k_sel)),
        UPCAST=INTERPRETED and q.dtype == torch.bfloat16,
        QDOT=q_scales is not None,
        USE_T=floors is not None,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return _merge(cand, k, cfg.merge_block)


def _merge(cand: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounds of per-chunk top-k over the candidates until one chunk is left; the last round decodes."""
    nq = cand.shape[0]
    while True:
        n_in = cand.shape[1]
        n_chunks = (n_in + block - 1) // block
        final = n_chunks == 1
        out = cand if final else _empty((nq, n_chunks * k), torch.int64, cand.device)
        scores = _empty((nq, k), torch.float32, cand.device) if final else cand
        idx = _empty((nq, k), torch.int64, cand.device) if final else cand
        _merge_kernel[(n_chunks, nq)](
            cand, out, scores, idx, n_in, cand.stride(0), out.stride(0), K=k, BLOCK=block, FINAL=final, num_warps=8
        )
        if final:
            return scores, idx
        cand = out
