"""Can the engine afford SoT right now? A policy over vLLM's scheduler snapshot (``EngineLoad``).

SoT turns one request into 1 + N concurrent ones; when the batch is nearly full or the KV cache is nearly used
up, those extra sequences only queue, so normal decoding is faster for everyone. Otherwise the free batch room
caps the number of points.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotrag.app.engines.base import EngineLoad


@dataclass(frozen=True)
class LoadVerdict:
    ok: bool
    max_points: int | None
    text: str


@dataclass(frozen=True)
class LoadPolicy:
    """When the engine is too busy for SoT, and how many points its free batch room allows.

    ``busy`` = running + waiting sequences. SoT is refused when ``busy / max_num_seqs`` reaches
    ``max_busy_fraction``, when KV-cache use reaches ``max_kv_cache_usage``, or when fewer than
    ``min_free_seqs`` batch slots are free (the skeleton is done by then, so every point needs a slot).
    """

    max_busy_fraction: float = 0.75
    max_kv_cache_usage: float = 0.90
    min_free_seqs: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.max_busy_fraction <= 1.0:
            raise ValueError("max_busy_fraction must be in (0, 1]")
        if not 0.0 < self.max_kv_cache_usage <= 1.0:
            raise ValueError("max_kv_cache_usage must be in (0, 1]")
        if self.min_free_seqs < 1:
            raise ValueError("min_free_seqs must be >= 1")

    def check(self, load: EngineLoad | None) -> LoadVerdict:
        if load is None:
            return LoadVerdict(True, None, "load: unknown")
        busy = load.running + load.waiting
        capacity = max(load.max_num_seqs, 1)
        free = capacity - busy
        queued = f", {load.waiting} waiting" if load.waiting else ""
        usage = f"{load.running}/{capacity} running{queued}"
        kv = f"kv {load.kv_cache_usage:.0%}"
        if busy / capacity >= self.max_busy_fraction:
            return LoadVerdict(False, None, f"load: saturated, {usage} (limit {self.max_busy_fraction:.0%})")
        if load.kv_cache_usage >= self.max_kv_cache_usage:
            return LoadVerdict(False, None, f"load: {kv} >= {self.max_kv_cache_usage:.0%}, {usage}")
        if free < self.min_free_seqs:
            return LoadVerdict(False, None, f"load: {free} free slots, {usage}")
        return LoadVerdict(True, free, f"load: {usage}")

