"""Merge ``real_shapes.py`` outputs (one per machine start) into ``benchmarks/results/gpu_real_shapes.json`` and print
the tables: per machine and overall, per source model and mode, the median / p10 / p90 speed-up and bound and
their ratios; the fixed 7 x 80 row; the replay's own cost; the load table.

Usage: ``python benchmarks/gpu/real_report.py RAW.json [RAW.json ...] [--out benchmarks/results/gpu_real_shapes.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_shapes import print_summary, summarize


def _interp(steps: dict[int, float], b: int) -> float:
    lo = max((k for k in steps if k <= b), default=min(steps))
    hi = min((k for k in steps if k >= b), default=max(steps))
    return steps[lo] if hi == lo else steps[lo] + (steps[hi] - steps[lo]) * (b - lo) / (hi - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("raw", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/gpu_real_shapes.json")
    ap.add_argument("--note", default="", help="what the runs were (machine starts, versions), kept in the output")
    a = ap.parse_args()
    runs = [json.loads(Path(p).read_text()) for p in a.raw]
    rows = [r for run in runs for r in run.get("rows", [])]
    machines = []
    for run in runs:
        label = run["label"]
        m = {
            "machine": label,
            "gpu": run.get("gpu"),
            "host": run.get("host"),
            "vllm": run.get("vllm"),
            "torch": run.get("torch"),
            "tokens_per_word": run.get("tokens_per_word"),
            "steps": run.get("steps"),
            "replay_cost": run.get("replay_cost"),
            "load": [{k: v for k, v in x.items() if k != "latencies"} for x in run.get("load", [])],
            "summary": summarize([r for r in run.get("rows", [])]),
        }
        real = [r for r in run.get("rows", []) if r["source_model"] != "fixed-7x80" and r["mode"] == "sot"]
        if len(real) > 2:  # replayed normal answers: wall = a + b * tokens; b against the batch-1 decode step
            xs, ys = [r["normal_tokens"] for r in real], [r["normal_s"] for r in real]
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
            m["replayed_normal_ms_per_token"] = b * 1e3
            m["replayed_normal_fixed_ms"] = (my - b * mx) * 1e3
        steps = {s["batch"]: s["step_ms"] for s in run.get("steps") or []}
        if 1 in steps and len(steps) > 1:  # the bound in time: points decode in a batch, whose step costs more
            for r in run.get("rows", []):
                if r["source_model"] != "fixed-7x80" and r["mode"] == "sot" and r["points"]:
                    sb = _interp(steps, r["points"])
                    r["bound_time"] = (
                        r["normal_tokens"]
                        * steps[1]
                        / (r["skeleton_tokens"] * steps[1] + r["longest_point_tokens"] * sb)
                    )
            bt = [r["speedup"] / r["bound_time"] for r in run.get("rows", []) if r.get("bound_time")]
            if bt:
                m["median_speedup_over_time_bound"] = statistics.median(bt)
        fixed = [r for r in run.get("rows", []) if r["source_model"] == "fixed-7x80"]
        for mode in ("sot", "sot-eager"):
            sel = [r for r in fixed if r["mode"] == mode]
            if sel:
                m[f"fixed_{mode}"] = {
                    "reps": len(sel),
                    "speedup_median": statistics.median(r["speedup"] for r in sel),
                    "normal_s": statistics.median(r["normal_s"] for r in sel),
                    "sot_s": statistics.median(r["sot_s"] for r in sel),
                    "bound_median": statistics.median(r["bound"] for r in sel if r["bound"])
                    if any(r["bound"] for r in sel)
                    else None,
                }
        machines.append(m)
        print(
            f"== {label}: {run.get('gpu')} / {(run.get('host') or {}).get('cpu_model')}; vLLM {run.get('vllm')}; "
            f"tokens/word {run.get('tokens_per_word')}"
        )
        print_summary(m["summary"], label)
        for mode in ("sot", "sot-eager"):
            if f"fixed_{mode}" in m:
                f = m[f"fixed_{mode}"]
                print(
                    f"[{label}] fixed 7x80 {mode}: x{f['speedup_median']:.2f} (normal {f['normal_s'] * 1e3:.0f} ms, "
                    f"sot {f['sot_s'] * 1e3:.0f} ms, {f['reps']} reps)"
                )
        if "replayed_normal_ms_per_token" in m:
            print(
                f"[{label}] replayed normal answers: {m['replayed_normal_ms_per_token']:.2f} ms a token "
                f"(+{m['replayed_normal_fixed_ms']:.0f} ms); batch-1 decode step {steps.get(1, float('nan')):.2f} ms"
            )
        if "median_speedup_over_time_bound" in m:
            print(
                f"[{label}] median speed-up / bound in time (batch step costs): "
                f"{m['median_speedup_over_time_bound']:.3f}"
            )
        if m["replay_cost"]:
            c = m["replay_cost"]
            print(
                f"[{label}] replay cost {c['per_step_ms']:.4f} ms/step = {100 * c['share_of_batch1_step']:.2f}% of the "
                f"batch-1 step ({c['batch1_step_ms']:.2f} ms)"
            )
        for x in m["load"]:
            print(
                f"[{label}] load {x['rate']:>4}/s {x['mode']:>9}: p50 {x['p50_s']:.2f}s p90 {x['p90_s']:.2f}s "
                f"{x['output_tokens_per_s']:.0f} tok/s sot_share {x['sot_share']:.2f}"
            )
    overall = summarize(rows)
    print("== all runs together")
    print_summary(overall, "all")
    out = {"note": a.note, "runs": machines, "summary_all_runs": overall, "rows": rows}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
