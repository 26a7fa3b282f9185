"""Where the time of one request goes, from vLLM's own per-request timestamps: a benchmark-only tap that rebinds
``AsyncLLM.add_request`` and leaves its outputs unchanged.

``RequestTap(llm)`` replaces the AsyncLLM's ``add_request`` (sotrag's engine sends every request through it, and
``AsyncLLM.generate`` calls it) with a pass-through whose output collector records, per request id: when it was
called (this process), vLLM's engine-core timestamps from ``RequestOutput.metrics`` (``queued_ts``: the core took
the request in; ``scheduled_ts``: first scheduled; ``first_token_ts``: its first token came out of a step), and
when its first and last outputs reached this event loop. The outputs pass through unchanged, so the pipeline and
the engine-direct reference run as they do without it; the only added work is one wrapper call and a dict write
per output. The core's timestamps are ``time.monotonic()`` in another process, which on Linux is the same clock as
``time.perf_counter()`` here (CLOCK_MONOTONIC), so the two can be subtracted.

``GCPauses`` records every garbage collection of this process (``gc.callbacks``) with its generation and
duration, so a row can say how much of its time the collector held the loop.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

STAGES = ("call", "queued_ts", "scheduled_ts", "first_token_ts", "first_recv", "last_recv")


class _TappedCollector:
    """A request's vLLM output collector, passed through: records when outputs reach this event loop."""

    def __init__(self, inner: Any, rec: dict[str, float]) -> None:
        self._inner, self._rec = inner, rec

    def _seen(self, out: Any) -> Any:
        if out is None:
            return out
        now = time.perf_counter()
        rec = self._rec
        if "first_recv" not in rec and out.outputs and out.outputs[0].token_ids:
            rec["first_recv"] = now
            metrics = getattr(out, "metrics", None)
            for key in ("queued_ts", "scheduled_ts", "first_token_ts"):
                value = getattr(metrics, key, 0.0) or 0.0
                if value:
                    rec[key] = float(value)
        rec["last_recv"] = now
        return out

    def get_nowait(self) -> Any:
        return self._seen(self._inner.get_nowait())

    async def get(self) -> Any:
        return self._seen(await self._inner.get())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RequestTap:
    def __init__(self, llm: Any) -> None:
        self.log: dict[str, dict[str, float]] = {}
        inner = llm.add_request

        async def add_request(request_id: str, *args: Any, **kw: Any) -> Any:
            rec = self.log[request_id] = {"call": time.perf_counter()}
            return _TappedCollector(await inner(request_id, *args, **kw), rec)

        llm.add_request = add_request

    def between(self, t0: float, t1: float) -> dict[str, dict[str, float]]:
        """The requests called in [t0, t1], their timestamps in ms from ``t0``."""
        return {rid: {k: round((v - t0) * 1e3, 2) for k, v in rec.items()}
                for rid, rec in self.log.items() if t0 <= rec["call"] <= t1}


def split(requests: dict[str, dict[str, float]], skeleton_of: Any) -> dict[str, Any]:
    """One SoT answer's requests (from ``RequestTap.between``): the skeleton's last output, then for the points
    the median and the last of each stage, all in ms from the answer's start."""
    skeleton = [r for rid, r in requests.items() if skeleton_of(rid)]
    points = [r for rid, r in requests.items() if not skeleton_of(rid)]
    out: dict[str, Any] = {"skeleton": skeleton[-1] if skeleton else None, "points": len(points)}
    for stage in STAGES:
        values = [p[stage] for p in points if stage in p]
        if values:
            out[f"points_{stage}_median"] = statistics.median(values)
            out[f"points_{stage}_min"] = min(values)
            out[f"points_{stage}_max"] = max(values)
    return out


class GCPauses:
    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((self._start, time.perf_counter() - self._start, int(info.get("generation", -1))))

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """Collections that started in [t0, t1]: count, total and longest ms, per generation."""
        rows: dict[str, Any] = {}
        for start, seconds, gen in self.pauses:
            if t0 <= start <= t1:
                row = rows.setdefault(f"gen{gen}", {"n": 0, "total_ms": 0.0, "max_ms": 0.0})
                row["n"] += 1
                row["total_ms"] = round(row["total_ms"] + seconds * 1e3, 3)
                row["max_ms"] = round(max(row["max_ms"], seconds * 1e3), 3)
        return rows
