"""The torch vector backend (``sotrag.retrieval.gpu_index``): the same answers as exact FAISS through adds and
removals, int8 storage, memory accounting. On CPU it runs its PyTorch path (``device="cpu"``); with a GPU
the same tests also run on ``cuda`` with the fused kernel. Through ``DocumentIndex``: test_gpu_index_store.py."""

from __future__ import annotations

import random

import faiss
import numpy as np
import pytest
import torch

from sotrag.retrieval import vectors
from sotrag.retrieval.gpu_index import TorchVectorIndex, vllm_memory_utilization, workspace_bytes

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _rng() -> tuple[int, np.random.Generator]:
    seed = random.SystemRandom().randrange(2**31)
    return seed, np.random.default_rng(seed)


def _fp16_exact(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Random vectors that fp16 holds exactly, so fp16 storage loses nothing against FAISS's fp32."""
    return rng.standard_normal((n, d)).astype(np.float16).astype(np.float32)


def _faiss(d: int) -> faiss.IndexIDMap:
    return faiss.IndexIDMap(faiss.IndexFlatIP(d))


def _same_results(ours: TorchVectorIndex, ref: faiss.Index, q: np.ndarray, k: int, seed: int, sel=None) -> None:
    """Equal to exact FAISS: rank by rank the same scores (fp32 sums in another order: 1e-4), and the same
    ids except where two scores are that close (a tie the two summation orders may break either way)."""
    s1, i1 = ours.search(q, k, sel)
    # faiss' stubs list neither the SWIG constructors' keywords nor the array forms its Python wrappers accept
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(sel)) if sel is not None else None  # type: ignore[call-arg]
    s2, i2 = ref.search(q, min(k, ours.ntotal if sel is None else len(sel)), params=params)
    assert i1.shape == i2.shape, f"seed={seed}"
    np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4, err_msg=f"seed={seed}")
    for row in range(len(q)):
        for pos in np.flatnonzero(i1[row] != i2[row]):
            near = np.abs(s2[row] - s1[row, pos]) <= 1e-4 * max(1.0, abs(float(s1[row, pos])))
            swapped = i1[row, pos] in set(i2[row][near].tolist())  # FAISS has it at a rank of near-equal score
            assert swapped or near[-1], f"seed={seed}: id {i1[row, pos]} at rank {pos} is no near-tie of FAISS's"


@pytest.mark.parametrize("device", DEVICES)
def test_matches_exact_faiss_through_adds_and_removals(device: str) -> None:
    seed, rng = _rng()
    d = 48
    ours, ref = TorchVectorIndex(d, device), _faiss(d)
    next_id = 0
    for step in range(6):
        n_add = int(rng.integers(1, 1500))
        vecs = _fp16_exact(rng, n_add, d)
        ids = np.arange(next_id, next_id + n_add, dtype=np.int64) * 3 + 7  # sparse, like store vector_ids
        next_id += n_add
        ours.add_with_ids(vecs, ids)
        ref.add_with_ids(vecs, ids)
        if step % 2:
            live = faiss.vector_to_array(ref.id_map)
            gone = rng.choice(live, size=len(live) // 3, replace=False)
            assert ours.remove_ids(gone) == ref.remove_ids(gone) == len(gone)  # type: ignore[arg-type]
        assert ours.ntotal == ref.ntotal
        q = _fp16_exact(rng, 5, d)
        for k in (1, 10, 128):
            _same_results(ours, ref, q, k, seed)
    live = faiss.vector_to_array(ref.id_map)
    sel = rng.choice(live, size=40, replace=False)
    _same_results(ours, ref, _fp16_exact(rng, 3, d), 10, seed, sel)


@pytest.mark.parametrize("device", DEVICES)
def test_int8_storage_scores_the_dequantized_rows(device: str) -> None:
    from sotrag.kernels.reference import quantize_int8

    seed, rng = _rng()
    d = 32
    vecs = rng.standard_normal((700, d)).astype(np.float32)
    ids = np.arange(700, dtype=np.int64)
    ours = TorchVectorIndex(d, device, "int8")
    ours.add_with_ids(vecs, ids)
    xi, sc = quantize_int8(torch.from_numpy(vecs))
    ref = _faiss(d)
    ref.add_with_ids((xi.double() * sc.double()[:, None]).float().numpy(), ids)
    _same_results(ours, ref, _fp16_exact(rng, 4, d), 10, seed)
    assert ours.nbytes() >= 700 * (d + 4 + 8)


def test_bad_input_is_refused() -> None:
    ix = TorchVectorIndex(8, "cpu")
    with pytest.raises(ValueError, match="storage"):
        TorchVectorIndex(8, "cpu", "fp8")
    with pytest.raises(ValueError, match="ids"):
        ix.add_with_ids(np.ones((2, 8), np.float32), np.array([1, 1]))
    ix.add_with_ids(np.ones((2, 8), np.float32), np.array([1, 2]))
    with pytest.raises(ValueError, match="new and distinct"):
        ix.add_with_ids(np.ones((1, 8), np.float32), np.array([2]))
    with pytest.raises(ValueError, match=r"\[nq, 8\]"):
        ix.search(np.ones((1, 4), np.float32), 3)
    with pytest.raises(ValueError, match="k must be"):
        ix.search(np.ones((1, 8), np.float32), 0)
    assert ix.search(np.ones((2, 8), np.float32), 5)[1].shape == (2, 2)  # k past ntotal: what there is
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            TorchVectorIndex(8, "cuda")


def test_memory_accounting_for_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    ix = TorchVectorIndex(384, "cpu")
    ix.add_with_ids(np.ones((1000, 384), np.float32), np.arange(1000))
    assert ix.reserved_bytes() >= 2 * 1000 * (2 * 384 + 12)
    assert workspace_bytes(10**6, 64, 10) == 64 * 7813 * 10 * 8 * 2
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 140 * 2**30))
    assert vllm_memory_utilization(0.9, 14 * 2**30) == pytest.approx(0.88)  # 0.1 for the index, 0.02 margin
    assert vllm_memory_utilization(0.5, 14 * 2**30) == 0.5
    with pytest.raises(ValueError, match="too little is left"):
        vllm_memory_utilization(0.9, 135 * 2**30)


def test_faiss_search_many_is_the_batched_search() -> None:
    seed, rng = _rng()
    ix = vectors.build("flat", 16, np.arange(300), rng.standard_normal((300, 16)).astype(np.float32))
    q = rng.standard_normal((4, 16)).astype(np.float32)
    assert vectors.search_many(ix, q, 5) == [vectors.search(ix, q[i], 5) for i in range(4)], f"seed={seed}"
