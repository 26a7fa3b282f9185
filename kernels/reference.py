"""The plain PyTorch side of :mod:`sotrag.kernels.similarity_topk`: input checks, the reference top-k the
kernel is tested against, and int8 row quantization. Torch only, so CPU code paths need no Triton."""

from __future__ import annotations

import torch

MAX_K = 128


def check_inputs(queries: torch.Tensor, corpus: torch.Tensor, k: int, scales: torch.Tensor | None) -> None:
    """ValueError with a message for anything the kernel cannot take."""
    if not isinstance(queries, torch.Tensor) or not isinstance(corpus, torch.Tensor):
        raise ValueError("queries and corpus must be torch tensors")
    if queries.dim() != 2 or corpus.dim() != 2:
        got = f"{tuple(queries.shape)} and {tuple(corpus.shape)}"
        raise ValueError(f"queries must be [nq, d] and corpus [N, d]; got {got}")
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries have d={queries.shape[1]} but the corpus has d={corpus.shape[1]}")
    if queries.shape[0] < 1 or corpus.shape[0] < 1 or corpus.shape[1] < 1:
        raise ValueError("queries and corpus must not be empty")
    if corpus.shape[0] >= 2**31:
        raise ValueError("the corpus must have fewer than 2**31 rows")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(MAX_K, corpus.shape[0]):
        raise ValueError(f"k must be an int in [1, min({MAX_K}, N={corpus.shape[0]})]; got {k!r}")
    if queries.device != corpus.device:
        raise ValueError(f"queries are on {queries.device} but the corpus is on {corpus.device}")
    if scales is None:
        if corpus.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"corpus must be float16 or bfloat16 (or int8 with scales); got {corpus.dtype}")
    else:
        if corpus.dtype != torch.int8:
            raise ValueError(f"scales are for an int8 corpus; got a {corpus.dtype} corpus")
        if scales.dtype != torch.float32 or scales.shape != (corpus.shape[0],):
            got = f"{scales.dtype} {tuple(scales.shape)}"
            raise ValueError(f"scales must be float32 of shape ({corpus.shape[0]},); got {got}")
        if scales.device != corpus.device:
            raise ValueError("scales must be on the corpus's device")
    if not queries.is_floating_point():
        raise ValueError(f"queries must be floating point; got {queries.dtype}")
    if corpus.stride(1) != 1:
        raise ValueError("corpus rows must be contiguous (corpus.stride(1) == 1)")


def quantize_int8(corpus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``row ~= scale * int8_row`` with ``scale = max|row| / 127`` (fp32)."""
    if corpus.dim() != 2 or not corpus.is_floating_point():
        raise ValueError(f"corpus must be a 2-D float tensor; got {corpus.dtype} {tuple(corpus.shape)}")
    x = corpus.float()
    amax = x.abs().amax(dim=1)
    scales = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(x / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scales.contiguous()


def similarity_topk_reference(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    k: int,
    scales: torch.Tensor | None = None,
    *,
    int8_queries: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch: all scores in fp32, then a stable sort (ties keep the lower index first).

    Same arithmetic as the kernel: queries cast to the corpus's float type (fp16 for int8 rows), or with
    ``int8_queries`` quantized per query, integer dot products, then times the query and row scales."""
    check_inputs(queries, corpus, k, scales)
    if int8_queries:
        if scales is None:
            raise ValueError("int8_queries needs an int8 corpus with scales")
        qi, q_scales = quantize_int8(queries)
        scores = (qi.float() @ corpus.float().T) * q_scales[:, None]
    else:
        q = queries.to(torch.float16 if scales is not None else corpus.dtype).float()
        scores = q @ corpus.float().T
    if scales is not None:
        scores = scores * scales[None, :]
    vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
    return vals[:, :k].contiguous(), idx[:, :k].contiguous()


def rerank(
    queries: torch.Tensor, rows: torch.Tensor, candidates: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact fp32 scores of each query's candidate rows (indices into ``rows``), best ``k`` of them:
    the second step after an approximate (int8) search over-fetched candidates."""
    if candidates.dim() != 2 or candidates.shape[0] != queries.shape[0] or not 1 <= k <= candidates.shape[1]:
        raise ValueError(f"candidates must be [nq, >= k]; got {tuple(candidates.shape)} for k={k}")
    picked = rows[candidates].float()  # [nq, c, d]
    scores = torch.einsum("qcd,qd->qc", picked, queries.float())
    vals, pos = torch.topk(scores, k, dim=1)
    return vals, candidates.gather(1, pos)
