"""Where SoT's time goes beyond its ideal on real answer shapes, per answer, from ``real_shapes.py``'s raw rows.

The ideal of one answer is what the step-count bound assumes: SoT's own time to first token, then the skeleton's
and the longest point's tokens at the normal answer's decode rate (``(normal_s - normal_ttft_s) / normal_tokens``,
the same machine and answer). What SoT spends beyond it is split by stage:

- skeleton: ``skeleton_s - sot_ttft_s - skeleton_tokens x rate`` (below 0 where the skeleton's short context decodes
  faster than the normal answer's average step);
- hand-over: ``sot_s - skeleton_s - expansion_s`` (from the skeleton's end to the points' start, and assembly);
- expansion: ``expansion_s - longest_point_tokens x rate`` (the points' prefill, the batched steps, the tail).

``SoT / bound`` is the issue's ratio (median speed-up / median bound); ``ideal / bound`` the same with every answer
at its ideal: what the ratio would be with no skeleton, hand-over or expansion cost at all, the prefill still paid.

Medians over the answers of each machine start (the rows of mode ``sot``). Reads only what the rows recorded: no
GPU. Usage: ``python benchmarks/gpu/real_overhead.py benchmarks/results/gpu_real_shapes_raw_*.json
[--out benchmarks/results/gpu_real_overhead.txt]``
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

NEEDED = ("skeleton_s", "expansion_s", "sot_ttft_s", "normal_ttft_s", "normal_s", "sot_s")


def per_answer(row: dict) -> dict[str, float]:
    rate = (row["normal_s"] - row["normal_ttft_s"]) / row["normal_tokens"]
    ideal = row["sot_ttft_s"] + (row["skeleton_tokens"] + row["longest_point_tokens"]) * rate
    uncached = row.get("point_uncached_prompt_tokens") or []
    return {
        "sot_ms": row["sot_s"] * 1e3,
        "beyond_ideal_ms": (row["sot_s"] - ideal) * 1e3,
        "skeleton_ms": (row["skeleton_s"] - row["sot_ttft_s"] - row["skeleton_tokens"] * rate) * 1e3,
        "handover_ms": (row["sot_s"] - row["skeleton_s"] - row["expansion_s"]) * 1e3,
        "expansion_ms": (row["expansion_s"] - row["longest_point_tokens"] * rate) * 1e3,
        "ttft_ms": row["sot_ttft_s"] * 1e3,
        "step_ms": rate * 1e3,
        "uncached_per_point": statistics.fmean(uncached) if uncached else float("nan"),
        "share_beyond": (row["sot_s"] - ideal) / row["sot_s"],
        "speedup": row["normal_s"] / row["sot_s"],
        "speedup_at_ideal": row["normal_s"] / ideal,
        "bound": row["bound"],
    }


def summarize(run: dict) -> dict | None:
    rows = [
        r
        for r in run.get("rows", [])
        if r.get("mode") == "sot"
        and r.get("source_model") != "fixed-7x80"
        and all(r.get(k) is not None for k in NEEDED)
    ]
    if not rows:
        return None
    parts = [per_answer(r) for r in rows]
    bound = statistics.median(p["bound"] for p in parts)
    return {
        "ratio": statistics.median(p["speedup"] for p in parts) / bound,
        "ratio_at_ideal": statistics.median(p["speedup_at_ideal"] for p in parts) / bound,
        "machine": run["label"],
        "gpu": run.get("gpu"),
        "host": (run.get("host") or {}).get("cpu_model", "?"),
        "traced": "yes" if (run.get("args") or {}).get("trace") else "",
        "answers": len(rows),
        **{k: statistics.median(p[k] for p in parts) for k in parts[0]},
    }


COLUMNS = [
    ("answers", "answers", "{:d}"),
    ("sot_ms", "SoT ms", "{:.0f}"),
    ("beyond_ideal_ms", "beyond ideal", "{:.1f}"),
    ("share_beyond", "share", "{:.1%}"),
    ("skeleton_ms", "skeleton", "{:.1f}"),
    ("handover_ms", "hand-over", "{:.1f}"),
    ("expansion_ms", "expansion", "{:.1f}"),
    ("ttft_ms", "SoT ttft", "{:.1f}"),
    ("step_ms", "step ms", "{:.2f}"),
    ("uncached_per_point", "uncached/point", "{:.0f}"),
    ("ratio", "SoT / bound", "{:.3f}"),
    ("ratio_at_ideal", "ideal / bound", "{:.3f}"),
]


def table(summaries: list[dict]) -> str:
    head = "| start | GPU | host CPU | traced | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for s in summaries:
        cells = [fmt.format(s[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {s['machine']} | {s['gpu']} | {s['host']} | {s['traced']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("raw", nargs="+")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    summaries = [s for p in a.raw if (s := summarize(json.loads(Path(p).read_text()))) is not None]
    text = (
        "Medians per answer, ms (mode sot; real answers only). Ideal = SoT's ttft + (skeleton + longest point tokens)"
        " x the normal answer's decode ms/token. Traced runs (--trace) add work to every output.\n"
        + table(summaries)
        + "\n"
    )
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
