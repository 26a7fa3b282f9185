"""Can the engine afford SoT right now? A policy over vLLM's own load signals (``EngineLoad``), with hysteresis.

SoT turns one request into 1 + N concurrent ones. While the GPU has room in its decode batch that costs
nothing (a decode step at batch 8 is about as long as at batch 1), but once the engine is really busy the extra
sequences only queue, or make every step longer (each point re-reads the shared context's KV), and normal
decoding is faster for everyone. A count of batch slots does not see that: in the GPU load runs the median
latency was already many times its idle value while fewer than half the slots were in use
(docs/archive/benchmarks-history.md, "Why auto mode never fell back under load"). So the policy looks at what the
load costs:

- ``waiting``: requests queued because the batch or the KV cache is full (``vllm:num_requests_waiting``);
- ``itl_ratio``: the recent inter-token latency over the engine's idle value (every step is slower);
- KV-cache use, and the batch slots SoT's points need (as before);
- ``loop_lag_s``: how late this process's event loop runs (``loop_lag.LoopLag``). The pipeline and, in
  process, vLLM's output handling share that loop, and SoT costs it more per answer than normal decoding, so
  the loop can saturate while the engine's own stats look calm.

Hysteresis: once refused, SoT comes back only when every signal is under its (lower) resume threshold, so
answers do not flap between modes at the edge. The thresholds are from the GPU load sweep (docs/router.md;
docs/archive/benchmarks-history.md, issue 13, 2026-12-01).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sotrag.app.engines.base import EngineLoad


@dataclass(frozen=True)
class LoadVerdict:
    ok: bool
    max_points: int | None
    text: str


@dataclass
class LoadPolicy:
    """When the engine is too busy for SoT, and how many points its free batch room allows.

    SoT is refused when ``waiting >= max_waiting``, the ITL ratio reaches ``max_itl_ratio``, KV-cache use
    reaches ``max_kv_cache_usage``, ``(running + waiting) / max_num_seqs`` reaches ``max_busy_fraction``,
    fewer than ``min_free_seqs`` slots are free, or the event loop's lag reaches ``max_loop_lag_s``. After a
    refusal it is allowed again only when nothing waits, the ITL ratio is under ``resume_itl_ratio``, KV use is
    under ``max_kv_cache_usage - resume_kv_margin`` and the loop lag under ``resume_loop_lag_s``.
    """

    max_busy_fraction: float = 0.75
    max_kv_cache_usage: float = 0.90
    min_free_seqs: int = 2
    max_waiting: int = 1
    max_itl_ratio: float = 2.5
    resume_itl_ratio: float = 1.8
    resume_kv_margin: float = 0.10
    max_loop_lag_s: float = 0.020
    resume_loop_lag_s: float = 0.005
    _refusing: bool = field(default=False, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.max_busy_fraction <= 1.0:
            raise ValueError("max_busy_fraction must be in (0, 1]")
        if not 0.0 < self.max_kv_cache_usage <= 1.0:
            raise ValueError("max_kv_cache_usage must be in (0, 1]")
        if self.min_free_seqs < 1:
            raise ValueError("min_free_seqs must be >= 1")
        if self.max_waiting < 1:
            raise ValueError("max_waiting must be >= 1")
        if not 1.0 <= self.resume_itl_ratio <= self.max_itl_ratio:
            raise ValueError("need 1 <= resume_itl_ratio <= max_itl_ratio")
        if not 0.0 < self.resume_loop_lag_s <= self.max_loop_lag_s:
            raise ValueError("need 0 < resume_loop_lag_s <= max_loop_lag_s")

    @property
    def refusing(self) -> bool:
        """True while SoT is refused (the hysteresis state)."""
        return self._refusing

    def check(self, load: EngineLoad | None, loop_lag_s: float | None = None) -> LoadVerdict:
        """The verdict for one answer; ``loop_lag_s`` is this process's event-loop lag (None: not measured)."""
        lag = loop_lag_s
        lag_over = (
            f"loop lag {lag * 1e3:.0f} ms >= {self.max_loop_lag_s * 1e3:.0f} ms"
            if lag is not None and lag >= self.max_loop_lag_s
            else None
        )
        if load is None:
            if lag_over is None:
                return LoadVerdict(True, None, "load: unknown")
            with self._lock:
                self._refusing = True
            return LoadVerdict(False, None, f"load: {lag_over}")
        capacity = max(load.max_num_seqs, 1)
        busy = load.running + load.waiting
        free = capacity - busy
        ratio = load.itl_ratio
        queued = f", {load.waiting} waiting" if load.waiting else ""
        itl = f", itl x{ratio:.2f}" if ratio is not None else ""
        slow_loop = f", loop lag {lag * 1e3:.0f} ms" if lag is not None and lag >= self.resume_loop_lag_s else ""
        state = f"{load.running}/{capacity} running{queued}, kv {load.kv_cache_usage:.0%}{itl}{slow_loop}"

        over: list[str] = []
        if load.waiting >= self.max_waiting:
            over.append(f"{load.waiting} waiting >= {self.max_waiting}")
        if ratio is not None and ratio >= self.max_itl_ratio:
            over.append(f"itl x{ratio:.2f} >= x{self.max_itl_ratio:.2f}")
        if load.kv_cache_usage >= self.max_kv_cache_usage:
            over.append(f"kv {load.kv_cache_usage:.0%} >= {self.max_kv_cache_usage:.0%}")
        if busy / capacity >= self.max_busy_fraction:
            over.append(f"saturated, {busy}/{capacity} >= {self.max_busy_fraction:.0%}")
        if free < self.min_free_seqs:
            over.append(f"{free} free slots")
        if lag_over is not None:
            over.append(lag_over)
        with self._lock:
            if over:
                self._refusing = True
                return LoadVerdict(False, None, f"load: {'; '.join(over)} ({state})")
            if self._refusing:
                calm = (
                    load.waiting == 0
                    and (ratio is None or ratio < self.resume_itl_ratio)
                    and load.kv_cache_usage < self.max_kv_cache_usage - self.resume_kv_margin
                    and (lag is None or lag < self.resume_loop_lag_s)
                )
                if not calm:
                    return LoadVerdict(
                        False,
                        None,
                        f"load: still busy, SoT resumes under itl x{self.resume_itl_ratio:.2f} and loop lag "
                        f"{self.resume_loop_lag_s * 1e3:.0f} ms ({state})",
                    )
                self._refusing = False
        return LoadVerdict(True, free, f"load: {state}")
