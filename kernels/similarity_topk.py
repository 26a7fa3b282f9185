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
    Q,  # [nq, D] queries, fp16/bf16
    X,  # [N, D] corpus rows, fp16/bf16, or int8 when HAS_SCALE
    S,  # [N] fp32 row scales (int8 corpus only; any pointer otherwise)
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
    UPCAST: tl.constexpr,  # interpreter only: its bf16 dot is wrong (Triton 3.9), so dot in fp32 there
):
    """One tile of BLOCK_N rows x one block of BLOCK_Q queries -> the tile's K_SEL best keys per query."""
    pid_n = tl.program_id(0)
    pid_q = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    row_ok = rows < N
    q_ok = qs < nq
    x_off = rows.to(tl.int64)[:, None] * stride_x  # N * d passes 2**31 on large corpora
    acc = tl.zeros([BLOCK_N, BLOCK_Q], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        d_ok = ds < D
        x = tl.load(X + x_off + ds[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0)
        q = tl.load(Q + qs[None, :] * stride_q + ds[:, None], mask=q_ok[None, :] & d_ok[:, None], other=0)
        if HAS_SCALE:
            x = x.to(q.dtype)  # int8 values are exact in fp16/bf16
        if UPCAST:  # noqa: SIM108 (a constexpr branch: only one side is compiled)
            acc = tl.dot(x.to(tl.float32), q.to(tl.float32), acc)
        else:
            acc = tl.dot(x, q, acc)
    if HAS_SCALE:
        acc = acc * tl.load(S + rows, mask=row_ok, other=0.0)[:, None]
    acc = acc + 0.0  # -0.0 -> +0.0, so equal scores give equal keys
    acc = tl.where(row_ok[:, None], acc, float("-inf"))
    bits = acc.to(tl.int32, bitcast=True)
    orderable = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # signed-int order == float order
    keys = (orderable.to(tl.int64) << 32) + (0x7FFFFFFF - rows).to(tl.int64)[:, None]
    out = Out + qs.to(tl.int64) * out_stride + pid_n * K_SEL
    if K_SEL == BLOCK_N:  # k covers the whole tile: every row is a candidate
        tl.store(out[None, :] + tl.arange(0, BLOCK_N)[:, None], keys, mask=q_ok[None, :])
    else:
        gone = tl.full([BLOCK_N, BLOCK_Q], -9223372036854775807 - 1, tl.int64)
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
    """Tiles of 128 rows for small k (at most 1/12 of the scores survive as candidates); larger tiles for
    larger k, so at most a quarter do. Few queries: 4 warps and deep pipelining (memory-bound); many
    queries: 8 warps for the bigger score tile. Measured alternatives: benchmarks/kernels.py."""
    block_n = min(512, max(128, _next_pow2(4 * k)))
    many = nq > 16
    return TileConfig(
        block_n=block_n,
        block_d=64,
        num_warps=8 if many or block_n > 128 else 4,
        num_stages=2 if many else (4 if int8 else 3),
    )


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` inner products of each query against the corpus: ``(scores [nq,k] fp32, indices [nq,k] int64)``.

    ``corpus`` is fp16/bf16 ``[N, d]``, or int8 ``[N, d]`` with ``scales`` (fp32 ``[N]``, row i scores
    ``scales[i] * (q . corpus[i])``). Queries are cast to the corpus's float type (fp16 for int8).
    Rows sorted by score, ties by lower index. CUDA tensors run the compiled kernel, CPU tensors the
    Triton interpreter.
    """
    check_inputs(queries, corpus, k, scales)
    nq, d = queries.shape
    n = corpus.shape[0]
    int8 = scales is not None
    qdtype = torch.float16 if int8 else corpus.dtype
    q = queries.to(qdtype).contiguous()
    cfg = config or default_config(nq, d, k, int8)
    block_q = min(64, max(16, _next_pow2(nq)))
    k_sel = min(k, cfg.block_n)
    n_tiles = (n + cfg.block_n - 1) // cfg.block_n
    cand = _empty((nq, n_tiles * k_sel), torch.int64, corpus.device)
    grid = (n_tiles, (nq + block_q - 1) // block_q)
    if corpus.device.type != "cuda" and not INTERPRETED:
        raise ValueError("CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported")
    _topk_tile_kernel[grid](
        q,
        corpus,
        scales if int8 else q,
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
        UPCAST=INTERPRETED and q.dtype == torch.bfloat16,
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
