"""Embeddings held on a torch device and searched exactly with the fused top-k kernel.

:class:`TorchVectorIndex` mirrors the FAISS index of a :class:`~sotrag.retrieval.index.DocumentIndex`: the
same store ``vector_id``s, the same adds and removals, exact inner-product search over all rows (what FAISS
``IndexFlatIP`` returns, up to the storage precision). On CUDA it searches with
:func:`sotrag.kernels.similarity_topk.similarity_topk`; on CPU with its PyTorch reference (or the kernel
under Triton's interpreter), so the bookkeeping is tested without a GPU.

Rows live in one contiguous buffer that grows by doubling; a removal moves rows from the tail into the
holes, so the buffer stays dense and a search reads exactly ``ntotal`` rows.

GPU memory: the buffer (``capacity * (2d or d + 4)`` bytes), the id map (8 bytes a row) and the search
workspace. :meth:`reserved_bytes` counts these plus room for one doubling, and
:func:`vllm_memory_utilization` turns that into the ``gpu_memory_utilization`` vLLM may take beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

Storage = Literal["fp16", "int8"]
STORAGES: tuple[str, ...] = ("fp16", "int8")
MAX_BATCH = 64  # queries per kernel call that the workspace estimate covers (a skeleton has at most 20 points)
MAX_K = 128


class TorchVectorIndex:
    """An exact inner-product index over ``dim``-wide rows on ``device``, keyed by int64 ids."""

    def __init__(self, dim: int, device: str = "cuda", storage: str = "fp16") -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown vector storage {storage!r} (use fp16 or int8)")
        if dim < 1:
            raise ValueError("dim must be at least 1")
        self.d = dim
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"vector search device {device!r} asked for, but torch sees no CUDA device")
        self.storage = storage
        self._n = 0
        self._rows = self._alloc(0)
        self._scales = torch.empty(0, dtype=torch.float32, device=self.device)
        self._ids = torch.empty(0, dtype=torch.int64, device=self.device)
        self._host_ids = np.zeros(0, dtype=np.int64)  # row -> id, on the host for the bookkeeping
        self._row_of: dict[int, int] = {}  # id -> row

    # -- FAISS-like surface (what DocumentIndex uses) -------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return self._n

    def add_with_ids(self, vecs: np.ndarray, ids: np.ndarray) -> None:
        vecs = np.asarray(vecs, dtype=np.float32).reshape(-1, self.d) if np.size(vecs) else np.zeros((0, self.d))
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(vecs) != len(ids):
            raise ValueError(f"{len(vecs)} vectors but {len(ids)} ids")
        if len(set(ids.tolist())) != len(ids) or any(int(i) in self._row_of for i in ids):
            raise ValueError("ids must be new and distinct")
        if not len(ids):
            return
        self._reserve(self._n + len(ids))
        lo, hi = self._n, self._n + len(ids)
        x = torch.from_numpy(np.ascontiguousarray(vecs)).to(self.device)
        if self.storage == "int8":
            from sotrag.kernels.reference import quantize_int8

            self._rows[lo:hi], self._scales[lo:hi] = quantize_int8(x)
        else:
            self._rows[lo:hi] = x.half()
        self._ids[lo:hi] = torch.from_numpy(ids).to(self.device)
        self._host_ids[lo:hi] = ids
        for j, i in enumerate(ids.tolist()):
            self._row_of[i] = lo + j
        self._n = hi

    def remove_ids(self, ids: np.ndarray | Sequence[int]) -> int:
        """Remove the rows with these ids (unknown ids are ignored, as in FAISS); returns how many went."""
        want = np.asarray(ids, dtype=np.int64).reshape(-1).tolist()
        gone = sorted({self._row_of[i] for i in want if i in self._row_of})
        if not gone:
            return 0
        new_n = self._n - len(gone)
        gone_set = set(gone)
        holes = [r for r in gone if r < new_n]
        movers = [r for r in range(new_n, self._n) if r not in gone_set]  # as many as there are holes
        for r in gone:
            del self._row_of[int(self._host_ids[r])]
        if holes:
            dst = torch.tensor(holes, dtype=torch.int64, device=self.device)
            src = torch.tensor(movers, dtype=torch.int64, device=self.device)
            self._rows[dst] = self._rows[src]
            self._scales[dst] = self._scales[src]
            self._ids[dst] = self._ids[src]
            self._host_ids[holes] = self._host_ids[movers]
            for h in holes:
                self._row_of[int(self._host_ids[h])] = h
        self._n = new_n
        return len(gone)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [nq, k'], ids [nq, k'])`` best first, ``k' = min(k, rows searched)``; ties: older row first."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"queries must be [nq, {self.d}]; got {q.shape}")
        if k < 1:
            raise ValueError("k must be at least 1")
        rows, scales, ids = self._rows[: self._n], self._scales[: self._n], self._ids[: self._n]
        if allowed_ids is not None:
            sel = [self._row_of[int(i)] for i in np.asarray(allowed_ids).reshape(-1) if int(i) in self._row_of]
            pick = torch.tensor(sorted(sel), dtype=torch.int64, device=self.device)
            rows, ids = rows[pick], ids[pick]
            scales = scales[pick]
        n = rows.shape[0]
        if n == 0 or len(q) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = min(k, n, MAX_K)
        qt = torch.from_numpy(np.ascontiguousarray(q)).to(self.device)
        out_s, out_r = [], []
        for i in range(0, len(q), MAX_BATCH):
            s, r = _topk(qt[i : i + MAX_BATCH], rows, k, scales if self.storage == "int8" else None)
            out_s.append(s)
            out_r.append(r)
        scores, picked = torch.cat(out_s), torch.cat(out_r)
        return scores.cpu().numpy(), ids[picked].cpu().numpy()

    # -- memory ---------------------------------------------------------------------------------------------

    @property
    def row_bytes(self) -> int:
        return (self.d if self.storage == "int8" else 2 * self.d) + 4 + 8  # + scale + id

    def nbytes(self) -> int:
        """Device bytes held now (buffer capacity, scales and ids)."""
        return self._rows.shape[0] * self.row_bytes

    def reserved_bytes(self, growth: float = 2.0, max_k: int = 64) -> int:
        """What to keep free for this index: ``growth`` x today's rows, plus one search's workspace."""
        rows = max(self._n, 1)
        return int(growth * rows * self.row_bytes) + workspace_bytes(int(growth * rows), MAX_BATCH, max_k)

    # -- internals ------------------------------------------------------------------------------------------

    def _alloc(self, cap: int) -> torch.Tensor:
        dtype = torch.int8 if self.storage == "int8" else torch.float16
        return torch.empty((cap, self.d), dtype=dtype, device=self.device)

    def _reserve(self, need: int) -> None:
        cap = self._rows.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap, 1024)
        rows = self._alloc(cap)
        rows[: self._n] = self._rows[: self._n]
        scales = torch.empty(cap, dtype=torch.float32, device=self.device)
        scales[: self._n] = self._scales[: self._n]
        ids = torch.empty(cap, dtype=torch.int64, device=self.device)
        ids[: self._n] = self._ids[: self._n]
        self._rows, self._scales, self._ids = rows, scales, ids
        self._host_ids = np.concatenate([self._host_ids[: self._n], np.zeros(cap - self._n, np.int64)])


def workspace_bytes(n_rows: int, nq: int, k: int) -> int:
    """The candidate keys one kernel call writes: nq x (N / tile rows) x min(k, tile rows) int64s."""
    block_n = min(512, max(128, 1 << max(0, (4 * k - 1).bit_length())))
    return nq * -(-n_rows // block_n) * min(k, block_n) * 8 * 2  # and the first merge round's output, at most


def _topk(
    q: torch.Tensor, rows: torch.Tensor, k: int, scales: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernel on CUDA (or under Triton's interpreter), else its PyTorch reference."""
    if rows.device.type == "cuda" or _interpreted():
        from sotrag.kernels.similarity_topk import similarity_topk

        return similarity_topk(q, rows, k, scales)
    from sotrag.kernels.reference import similarity_topk_reference

    return similarity_topk_reference(q, rows, k, scales)


def _interpreted() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def vllm_memory_utilization(requested: float, reserved_bytes: int, device: str = "cuda") -> float:
    """The ``gpu_memory_utilization`` to give vLLM when an index keeps ``reserved_bytes`` on the same GPU.

    vLLM takes ``utilization x total`` memory and refuses to start if that much is not free, so the index's
    share (with growth room and search workspace) comes off the top, plus 2% for the CUDA context.
    """
    total = torch.cuda.mem_get_info(torch.device(device))[1]
    share = reserved_bytes / total + 0.02
    util = min(requested, 1.0 - share)
    if util <= 0.05:
        raise ValueError(
            f"the vector index needs {reserved_bytes / 2**30:.1f} GiB of the GPU's {total / 2**30:.1f} GiB: "
            "too little is left for vLLM (use int8 storage, or search on the CPU)"
        )
    return util
