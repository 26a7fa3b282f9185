"""The replay processor's ``apply`` while the GPU is busy (as it is when vLLM samples): how much CPU time one call
takes, and whether any of its operations waits for the GPU (then its time is the GPU's backlog, not its own).
Compares the processor as shipped with the first version (a fresh pinned tensor per step and a Python-float
index assignment), and times each of that version's operations alone.

    python benchmarks/gpu/replay_step_cost.py     # on a CUDA machine; prints a table
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from sotrag.app.engines.replay import ReplayLogitsProcessor, _Request

ROWS, VOCAB, REPS = 8, 152064, 100


def processor() -> ReplayLogitsProcessor:
    p = object.__new__(ReplayLogitsProcessor)
    p.requests = {i: _Request(ids=tuple(range(5, 900)), output=[0] * (10 + i), eos=2) for i in range(ROWS)}
    p.stats = {"steps": 0, "rows": 0, "apply_s": 0.0, "update_s": 0.0, "added": 0, "unmatched": 0}
    p.stats_file, p.pin = None, True
    p._host, p._dev, p._zero, p._slot = None, None, None, 0
    return p


def first_version(p: ReplayLogitsProcessor, logits: Any) -> Any:
    rows = list(p.requests)
    targets = [r.ids[len(r.output)] for r in p.requests.values()]
    index = torch.tensor([rows, targets], dtype=torch.int64, pin_memory=True).to(logits.device, non_blocking=True)
    logits.fill_(float("-inf"))
    logits[index[0], index[1]] = 0.0
    return logits


def busy(a: Any) -> None:
    for _ in range(8):  # a few ms of GPU work queued ahead, as a forward pass is when sampling starts
        a @ a


def timed(fn: Any, a: Any) -> float:
    out = []
    for _ in range(REPS):
        busy(a)
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
    return statistics.median(out) * 1e3


def main() -> None:
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    logits = torch.randn(ROWS, VOCAB, device="cuda")
    p, q = processor(), processor()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    busy(a)
    torch.cuda.synchronize()
    ahead = (time.perf_counter() - t0) * 1e3
    print(f"GPU work queued ahead of each call: {ahead:.2f} ms ({torch.cuda.get_device_name()})")
    idx = torch.tensor([[0, 1], [2, 3]], device="cuda")
    zero = torch.zeros((), device="cuda")
    host = torch.tensor([[0, 1], [2, 3]], pin_memory=True)
    rows = [
        ("apply as shipped", lambda: p.apply(logits)),
        ("first version", lambda: first_version(q, logits)),
        ("  torch.tensor(pin_memory=True)", lambda: torch.tensor([[0, 1], [2, 3]], pin_memory=True)),
        ("  .to(cuda, non_blocking) from pinned", lambda: host.to("cuda", non_blocking=True)),
        ("  logits.fill_(-inf)", lambda: logits.fill_(float("-inf"))),
        ("  logits[i, j] = 0.0 (Python float)", lambda: logits.__setitem__((idx[0], idx[1]), 0.0)),
        ("  logits.index_put_ (device zero)", lambda: logits.index_put_((idx[0], idx[1]), zero)),
    ]
    for name, fn in rows:
        print(f"{name:<42} {timed(fn, a):8.3f} ms CPU per call (median of {REPS})")


if __name__ == "__main__":
    main()
